"""Bringing a host's persisted vnets and peers into a running datapath, and out again.

`vn insmod` and `network-vnet start` both load the module and then restore the state
directory into it; `network-vnet stop` takes a namespace's vnets out of the module
without forgetting them.  They share this code so the two commands cannot drift
apart.  Restoring adds only what the datapath does not run yet (`missing`), so it is
safe to repeat: a second `network-vnet start` changes nothing.  Nothing here goes
through the Controller, because the Controller persists every change, and neither
restoring nor taking down may touch the state file.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pyroute2 import IPRoute

import sxp
from vnet.control.controller import vnetd_answers
from vnet.control.datapath import Datapath
from vnet.control.restore import restore
from vnet.datapath.kmod import client as kmod
from vnet.errors import DatapathError
from vnet.host import netdev
from vnet.model.addr import parse_ipv4
from vnet.model.state import State, StateStore
from vnet.model.vnetid import VnetId

#: How a command shows a line of progress (stdout) or a problem that is not fatal (stderr).
Say = Callable[[str], None]


def underlay_address(address: str | None, interface: str | None) -> str | None:
    """The underlay address given with -a, or the only one of -i's interface; checked
    before anything is loaded or started, so a wrong choice changes nothing."""
    if not (address or interface):
        return None
    if address:
        return parse_ipv4(address)
    with IPRoute() as ipr:
        return netdev.pick_address(ipr, interface)


def missing(dp: Datapath, state: State) -> State:
    """The part of the persisted state that `dp` does not run (settings included whole)."""
    vnets = {str(sxp.child_value(r, "id")) for r in dp.vnets()}
    peers = {str(sxp.child_value(r, "addr")) for r in dp.peers()}
    return State(vnets={v: c for v, c in state.vnets.items() if str(v) not in vnets},
                 peers={a: p for a, p in state.peers.items() if a not in peers},
                 settings=dict(state.settings))


def set_up_module(store: StateStore, socket_path: Path, address: str | None, group: bool,
                  say: Say, warn: Say) -> None:
    """After the module is loaded (or found loaded): keep and set the underlay address,
    then restore the persisted group, vnets and peers this namespace lacks.

    A running vnetd on the state directory's socket keeps the state: two datapaths
    would fight over the port and the bridges."""
    if address:
        with store.transaction() as state, kmod.KmodClient() as dp:
            dp.set_address(address)
            state.settings["address"] = address
        say(f"underlay address {address}")
    state = store.load()
    kept = None if address else state.settings.get("address")
    if not (state.vnets or state.peers or state.settings.get("mcaddr") or kept):
        return
    if vnetd_answers(socket_path):
        say(f"vnetd serves {store.dir} here: its vnets and peers stay with vnetd")
        return
    failed = []
    with kmod.KmodClient() as dp:
        if kept:
            try:
                dp.set_address(kept)
                say(f"underlay address {kept} (kept in {store.dir})")
            except DatapathError as e:
                failed.append(f"cannot restore underlay address {kept}: {e.message}")
        todo = missing(dp, state)
        vnets, peers, not_restored = restore(dp, todo, group=group)
    failed += not_restored
    for message in failed:
        warn(message)
    say(f"restored {vnets} of {len(todo.vnets)} vnets and {peers} of {len(todo.peers)} peers "
        f"from {store.dir}")


def take_down(dp: Datapath) -> tuple[int, int, list[str]]:
    """Delete every vnet and peer `dp` runs (with the module: this namespace's share),
    leaving the state file alone so the next start brings them back.  Returns how
    many went and a message for each that would not."""
    failed = []
    vnets = peers = 0
    for rec in dp.vnets():
        vid = sxp.child_value(rec, "id")
        try:
            dp.vnet_del(VnetId.parse(str(vid)))
            vnets += 1
        except DatapathError as e:
            failed.append(f"cannot take down vnet {vid}: {e.message}")
    for rec in dp.peers():
        addr = str(sxp.child_value(rec, "addr"))
        try:
            dp.peer_del(addr)
            peers += 1
        except DatapathError as e:
            failed.append(f"cannot take down peer {addr}: {e.message}")
    return vnets, peers, failed
