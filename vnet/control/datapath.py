"""The boundary between control (ids, configs, state, commands) and a datapath.

`vn` and the command language are written against `Datapath`; vnetd (user space)
implements it directly, `VnetdClient` implements it by talking to a running vnetd,
and `KmodClient` implements it over the kernel module's generic netlink family.
Errors are `DatapathError`s (vnet.errors) carrying an errno name, so every failure
reaches the user.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from vnet.control.events import MacChange
from vnet.errors import DatapathError
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointSpec
from vnet.model.linkctl import LinkControl
from vnet.model.vnetid import VnetId

Record = list


class Datapath(ABC):
    """What a vnet host can be asked to do; implemented by every datapath."""

    kind = "abstract"

    @abstractmethod
    def vnet_add(self, cfg: VnetConfig) -> None:
        """Create the vnet's device with cfg.mtu, enslave it to cfg.bridge (created if
        missing; none if cfg.bridge is None), attach cfg.ports and open cfg.endpoints."""

    @abstractmethod
    def vnet_del(self, vid: VnetId) -> None:
        """Remove the vnet's device and every vif and VARP entry of it."""

    @abstractmethod
    def vnet_keys(self, vid: VnetId, key_files: tuple[str, ...]) -> None:
        """Replace the keys of a secure vnet (send key first) in one step, so a
        rotation never leaves the vnet with no key or the wrong send key."""

    @abstractmethod
    def vnets(self) -> list[Record]: ...

    @abstractmethod
    def port_add(self, vid: VnetId, ifname: str) -> None:
        """Attach the interface `ifname` to the vnet as a port (doc/ports.md), now if it
        exists, else whenever an interface of that name appears."""

    @abstractmethod
    def port_del(self, vid: VnetId, ifname: str) -> None:
        """Detach a port; its interface, if any, stays where it is."""

    def port_set(self, vid: VnetId, ifname: str, link: LinkControl) -> None:
        """Give port `ifname` of the vnet the link control `link` (doc/ports.md, "Link
        control"), replacing what it had, live: the port stays attached and its frames
        in flight are not lost by the change."""
        raise DatapathError("EOPNOTSUPP", f"the {self.kind} datapath has no link control")

    @abstractmethod
    def ports(self) -> list[Record]:
        """One records.port_record per port of every vnet."""

    @abstractmethod
    def endpoint_add(self, vid: VnetId, spec: EndpointSpec) -> None:
        """Open a socket endpoint of the vnet (doc/endpoints.md); an address in use is
        an error and nothing is left open."""

    @abstractmethod
    def endpoint_del(self, vid: VnetId, spec: EndpointSpec) -> None:
        """Close an endpoint of the vnet."""

    @abstractmethod
    def endpoints(self) -> list[Record]:
        """One records.endpoint_record per endpoint of every vnet."""

    @abstractmethod
    def vif_add(self, vid: VnetId, mac: bytes) -> None: ...

    @abstractmethod
    def vif_del(self, vid: VnetId, mac: bytes) -> None: ...

    @abstractmethod
    def vifs(self) -> list[Record]: ...

    @abstractmethod
    def peer_add(self, addr: str, port: int) -> None: ...

    @abstractmethod
    def peer_del(self, addr: str) -> None: ...

    @abstractmethod
    def peers(self) -> list[Record]: ...

    @abstractmethod
    def varp_flush(self) -> None: ...

    @abstractmethod
    def varp(self) -> list[Record]: ...

    @abstractmethod
    def set_mcaddr(self, addr: str) -> None: ...

    @abstractmethod
    def stats(self) -> list[Record]: ...

    def mac_changes(self, opened: Callable[[], None] | None = None) -> Iterator[MacChange]:
        """Each MAC learned, moved or expired on this host from now on, as it happens
        (`vn monitor`), blocking between them; `opened` is called once the datapath
        reports to this reader (no change from then on is missed)."""
        raise DatapathError("EOPNOTSUPP", f"the {self.kind} datapath reports no MAC changes")

    def endpoint_frames(self, opened: Callable[[], None] | None = None) -> Iterator:
        """Each frame of this host's socket endpoints from now on, both ways
        (vnet.datapath.kmod.capture.EndpointFrame), for `vn capture`; `opened` as for
        mac_changes.  vnetd shows its endpoints' frames through its `capture` stream
        instead (vnet.datapath.vnetd.capture), filtered where they lie."""
        raise DatapathError("EOPNOTSUPP", f"the {self.kind} datapath shows no endpoint frames")
