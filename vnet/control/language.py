"""The module command language (reference 3.4), evaluated against any Datapath.

`(vnet.add (id 97) (vnetif vnif97) (security none))` and friends: the language the
original wrote to /proc/vnet/policy and to vnetd's socket.  Unlike the original,
every command returns its result or an error to the caller, and vnet.add accepts
the extra config fields (bridge, encapsulation) instead of ignoring them.
"""
from __future__ import annotations

from typing import Callable

import sxp
from vnet.control.datapath import Datapath, Record
from vnet.errors import DatapathError, VnetError
from vnet.model.addr import ifname_check, parse_ipv4, parse_mac
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointError, EndpointSpec
from vnet.model.linkctl import OPTIONS as LINK_OPTIONS
from vnet.model.linkctl import LinkControl, LinkError
from vnet.model.vnetid import InvalidVnetId, VnetId
from vnet.wire.formats import PORT


def _field(cmd: list, key: str, required: bool = True) -> str | None:
    value = sxp.child_value(cmd, key)
    if value is None and required:
        raise DatapathError("EINVAL", f"{cmd[0]}: missing ({key} ...)")
    if value is not None and not isinstance(value, str):
        raise DatapathError("EINVAL", f"{cmd[0]}: ({key} ...) must be an atom")
    return value


def _vnet_id(cmd: list, key: str) -> VnetId:
    try:
        return VnetId.parse(_field(cmd, key) or "")
    except InvalidVnetId as e:
        raise DatapathError("EINVAL", f"{cmd[0]}: {e}") from None


def _value(cmd: list, key: str, parse: Callable[[str], object]):
    try:
        return parse(_field(cmd, key) or "")
    except VnetError as e:
        raise DatapathError("EINVAL", f"{cmd[0]}: {e}") from None


def _port(cmd: list) -> int:
    text = _field(cmd, "port", required=False)
    if text is None:
        return PORT
    try:
        port = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise DatapathError("EINVAL", f"{cmd[0]}: invalid port '{text}': expected 1 to 65535")
    return port


def _vnet_add(dp: Datapath, cmd: list) -> list[Record]:
    try:
        cfg = VnetConfig.from_sxp(["vnet"] + cmd[1:], source="vnet.add")
    except VnetError as e:
        raise DatapathError("EINVAL", str(e)) from None
    dp.vnet_add(cfg)
    return []


def _vnet_keys(dp: Datapath, cmd: list) -> list[Record]:
    """(vnet.keys (id 97) (key-file SEND [OTHER])): paths only; the keys stay in files."""
    vid = _vnet_id(cmd, "id")
    for child in cmd[1:]:
        if isinstance(child, list) and child and child[0] == "key-file":
            files = child[1:]
            break
    else:
        raise DatapathError("EINVAL", f"{cmd[0]}: missing (key-file ...)")
    if not files or not all(isinstance(f, str) for f in files):
        raise DatapathError("EINVAL", f"{cmd[0]}: (key-file ...) takes one or two file names")
    dp.vnet_keys(vid, tuple(files))
    return []


def _ifname(cmd: list) -> str:
    name = _field(cmd, "ifname") or ""
    try:
        ifname_check(name, "interface name")
    except ValueError as e:
        raise DatapathError("EINVAL", f"{cmd[0]}: {e}") from None
    return name


def _endpoint(cmd: list) -> EndpointSpec:
    """(endpoint KIND ADDR [ADDR]) of an endpoint.add or endpoint.del."""
    for child in cmd[1:]:
        if isinstance(child, list) and child and child[0] == "endpoint":
            try:
                return EndpointSpec.from_sxp(child)
            except EndpointError as e:
                raise DatapathError("EINVAL", f"{cmd[0]}: {e}") from None
    raise DatapathError("EINVAL", f"{cmd[0]}: missing (endpoint KIND ADDR [ADDR])")


def _port_set(dp: Datapath, cmd: list) -> list[Record]:
    """(port.set (vnet V) (ifname X) (loss PCT) (delay MS) ... (suspended yes|no)): the
    port's whole link control; an option left out is none."""
    vid, ifname = _vnet_id(cmd, "vnet"), _ifname(cmd)
    options = [c for c in cmd[1:] if isinstance(c, list) and c and c[0] in LINK_OPTIONS]
    try:
        link = LinkControl.from_sxp(options)
    except LinkError as e:
        raise DatapathError("EINVAL", f"{cmd[0]}: port {ifname}: {e}") from None
    dp.port_set(vid, ifname, link)
    return []


COMMANDS: dict[str, Callable[[Datapath, list], list[Record]]] = {
    "vnet.add": _vnet_add,
    "vnet.del": lambda dp, c: dp.vnet_del(_vnet_id(c, "id")) or [],
    "vnet.keys": _vnet_keys,
    "vnet.list": lambda dp, c: dp.vnets(),
    "port.add": lambda dp, c: dp.port_add(_vnet_id(c, "vnet"), _ifname(c)) or [],
    "port.del": lambda dp, c: dp.port_del(_vnet_id(c, "vnet"), _ifname(c)) or [],
    "port.set": _port_set,
    "port.list": lambda dp, c: dp.ports(),
    "endpoint.add": lambda dp, c: dp.endpoint_add(_vnet_id(c, "vnet"), _endpoint(c)) or [],
    "endpoint.del": lambda dp, c: dp.endpoint_del(_vnet_id(c, "vnet"), _endpoint(c)) or [],
    "endpoint.list": lambda dp, c: dp.endpoints(),
    "vif.add": lambda dp, c: dp.vif_add(_vnet_id(c, "vnet"), _value(c, "vmac", parse_mac)) or [],
    "vif.del": lambda dp, c: dp.vif_del(_vnet_id(c, "vnet"), _value(c, "vmac", parse_mac)) or [],
    "vif.list": lambda dp, c: dp.vifs(),
    "peer.add": lambda dp, c: dp.peer_add(_value(c, "addr", parse_ipv4), _port(c)) or [],
    "peer.del": lambda dp, c: dp.peer_del(_value(c, "addr", parse_ipv4)) or [],
    "peer.list": lambda dp, c: dp.peers(),
    "varp.flush": lambda dp, c: dp.varp_flush() or [],
    "varp.list": lambda dp, c: dp.varp(),
    "varp.print": lambda dp, c: dp.vnets() + dp.vifs() + dp.varp(),
    "varp.mcaddr": lambda dp, c: dp.set_mcaddr(_value(c, "addr", parse_ipv4)) or [],
    "stats": lambda dp, c: dp.stats(),
}


def evaluate(dp: Datapath, cmd: sxp.Value) -> list[Record]:
    """Run one command; returns its records or raises DatapathError."""
    if not isinstance(cmd, list) or not cmd or not isinstance(cmd[0], str):
        raise DatapathError("EINVAL", f"not a command: {sxp.show(cmd)}")
    handler = COMMANDS.get(cmd[0])
    if handler is None:
        raise DatapathError("ENOSYS", f"unknown command '{cmd[0]}'; known: {', '.join(sorted(COMMANDS))}")
    return handler(dp, cmd)
