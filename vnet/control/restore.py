"""Bringing persisted vnets and peers into a datapath that has none of them.

One routine for both datapaths: vnetd runs it when it starts, and `vn insmod` and
`network-vnet start` run it after loading the kernel module, so a vnet comes back the
same way whichever datapath serves the host.
"""
from __future__ import annotations

from vnet.control.datapath import Datapath
from vnet.errors import DatapathError
from vnet.model.state import State


def restore(dp: Datapath, state: State, group: bool = True) -> tuple[int, int, list[str]]:
    """Bring the persisted group (unless `group` is false: vnetd joins its group when
    it starts), vnets and peers into `dp`; one bad entry does not stop the rest.
    Returns how many vnets and peers came back and a message for each one that did not."""
    failed = []
    mcaddr = state.settings.get("mcaddr")
    if group and mcaddr:
        try:
            dp.set_mcaddr(mcaddr)
        except DatapathError as e:
            failed.append(f"cannot restore group {mcaddr}: {e.message}")
    vnets = peers = 0
    for cfg in state.vnets.values():
        try:
            dp.vnet_add(cfg)
            vnets += 1
        except DatapathError as e:
            failed.append(f"cannot restore vnet {cfg.id}: {e.message}")
            continue
    for addr, port in state.peers.items():
        try:
            dp.peer_add(addr, port)
            peers += 1
        except DatapathError as e:
            failed.append(f"cannot restore peer {addr}: {e.message}")
    return vnets, peers, failed
