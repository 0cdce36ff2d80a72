"""vnet: private Ethernet LANs for VMs and containers across Linux hosts.

The package is what runs on a host, by layer: `model` (ids, addresses, configs, state,
keys), `wire` (the packet formats), `control` (the Datapath boundary, the controller,
the command language, the control socket), `datapath.vnetd` and `datapath.kmod` (the
two datapaths behind that boundary), `host` (devices, bring-up at boot, the service)
and `cli` (`vn`, `xm`).  Lower layers never import higher ones.
"""
from importlib import metadata
from pathlib import Path

try:
    __version__ = metadata.version("vnet")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = (Path(__file__).resolve().parent.parent / "VERSION").read_text().strip()
