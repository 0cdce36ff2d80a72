"""The kernel module's datapath: the generic netlink family "vnet" (kmod/vnet.yaml).

`KmodClient` implements `Datapath` with the module's commands and gives the same
records and, where the errno means the same thing, the same error texts as vnetd, so
`vn` prints the same whatever serves the host.  The module knows vnet devices, not
bridges: like vnetd, the client creates the bridge and enslaves the device itself.
Every command acts on the network namespace of the netlink socket, so a client
opened inside a namespace drives that namespace's vnets.

The family's constants and message class are generated from the spec into family.py
(`python -m tools.genl`); this module is the hand-written part.

Loading and unloading the module (`insmod`, `rmmod`) use finit_module and
delete_module directly, so `vn` needs no kmod tools.
"""
from __future__ import annotations

import errno
import os
import socket
import subprocess
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import AsyncGenericNetlinkSocket, GenericNetlinkSocket

from vnet.control import records
from vnet.control.records import group_field
from vnet.control.datapath import Datapath, Record
from vnet.control.events import LOCAL, MacChange
from vnet.datapath.kmod.capture import EndpointFrame, endpoint_frames
from vnet.datapath.kmod.family import (
    VNET_CMD_ENDPOINT_ADD,
    VNET_CMD_ENDPOINT_DEL,
    VNET_CMD_ENDPOINT_GET,
    VNET_CMD_GET,
    VNET_CMD_KEYS_SET,
    VNET_CMD_MAC_EVENT,
    VNET_CMD_PEER_ADD,
    VNET_CMD_PEER_DEL,
    VNET_CMD_PEER_GET,
    VNET_CMD_PORT_ADD,
    VNET_CMD_PORT_DEL,
    VNET_CMD_PORT_GET,
    VNET_CMD_PORT_SET,
    VNET_CMD_SET,
    VNET_CMD_VARP_FLUSH,
    VNET_CMD_VARP_GET,
    VNET_CMD_VIF_ADD,
    VNET_CMD_VIF_DEL,
    VNET_CMD_VIF_GET,
    VNET_CMD_VNET_ADD,
    VNET_CMD_VNET_DEL,
    VNET_CMD_VNET_GET,
    VNET_GENL_NAME,
    VNET_GENL_VERSION,
    VNET_MAC_EVENT_EXPIRED,
    VNET_MAC_EVENT_LEARNED,
    VNET_MAC_EVENT_MOVED,
    VNET_MAC_EVENT_REMOVED,
    VNET_MAC_TABLE_VARP,
    VNET_MCGRP_CAPTURE,
    VNET_MCGRP_MONITOR,
    vnetmsg,
)
from vnet.errors import DatapathError
from vnet.host import netdev
from vnet.host.privilege import MODULE_NOT_OWNED, user_namespace_note
from vnet.model import keys
from vnet.model.addr import AddressError, format_mac, ifname_check, parse_ipv4
from vnet.model.config import ENCAPSULATIONS, SECURITY_LEVELS, VnetConfig
from vnet.model.endpoint import EndpointSpec
from vnet.model.linkctl import LinkControl
from vnet.model.vnetid import VnetId

MODULE_NAME = "vnet"

#: enum vnet_encap and enum vnet_security list their values in the order of these
#: tuples, so a value's index is its number on the wire.
ENCAP_VALUES = ENCAPSULATIONS
SECURITY_VALUES = SECURITY_LEVELS
#: enum vnet_port_state: a port's state on the wire, by number.
PORT_STATES = ("waiting", "attached")
#: enum vnet_endpoint_kind and enum vnet_endpoint_state, by number.
ENDPOINT_KINDS = ("udp", "tcp-listen", "tcp-connect")
ENDPOINT_STATES = ("connected", "listening", "waiting")

NOT_LOADED = ("the vnet kernel module is not loaded; load it with 'vn insmod', "
              "or start the user-space datapath with 'vnetd'")


def key_ids(nest: nla | None) -> list[int]:
    """A KEYS nest of a vnet dump as its key ids, send key first."""
    if nest is None:
        return []
    return [k.get_attr("VNET_A_KEY_ID") for k in nest.get_attrs("VNET_A_KEY")]


def keys_attr(held: list[keys.Key]) -> list:
    """VNET_A_KEYS for a request: the send key first."""
    return ["VNET_A_KEYS", {"attrs": [["VNET_A_KEY", {"attrs": [["VNET_A_KEY_ID", k.id],
                                                                ["VNET_A_KEY_SECRET", k.secret]]}]
                                      for k in held]}]


def link_attrs(link: LinkControl) -> list:
    """PORT_SET's LINK_* attributes for `link`, whole (one left out is none): loss and
    corrupt in millionths, delay and jitter in microseconds, the rate in bit/s."""
    return [["VNET_A_LINK_SUSPENDED", int(link.suspended)],
            ["VNET_A_LINK_LOSS", round(link.loss * 10_000)],
            ["VNET_A_LINK_CORRUPT", round(link.corrupt * 10_000)],
            ["VNET_A_LINK_DELAY", round(link.delay * 1000)],
            ["VNET_A_LINK_JITTER", round(link.jitter * 1000)],
            ["VNET_A_LINK_RATE", link.rate or 0]]


def link_of(m: vnetmsg) -> LinkControl:
    """The link control a PORT_GET message reports (its LINK_* attributes, those set)."""
    return LinkControl(loss=(m.get_attr("VNET_A_LINK_LOSS") or 0) / 10_000,
                       corrupt=(m.get_attr("VNET_A_LINK_CORRUPT") or 0) / 10_000,
                       delay=(m.get_attr("VNET_A_LINK_DELAY") or 0) / 1000,
                       jitter=(m.get_attr("VNET_A_LINK_JITTER") or 0) / 1000,
                       rate=m.get_attr("VNET_A_LINK_RATE") or None,
                       suspended=bool(m.get_attr("VNET_A_LINK_SUSPENDED")))


def run_tc(argv: list[str]) -> tuple[int, str]:
    """tc, for real: (returncode, stdout); 127 if tc cannot be run."""
    try:
        done = subprocess.run(["tc", *argv], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 127, ""
    return done.returncode, done.stdout


#: The handle of the netem root qdisc and the preference of the drop filters that `vn`
#: gave a port's interface before the module did link control itself.
OLD_TC_HANDLE, OLD_TC_PREF = "1798:", "1798"


def drop_old_tc(ifname: str, run: Callable[[list[str]], tuple[int, str]] = run_tc) -> None:
    """Best effort, once per port-set: take off a port's interface the tc that `vn`
    gave it before the module did link control itself (a netem root qdisc of handle
    1798:, clsact drop filters of preference 1798), left there by an upgrade without a
    reboot.  Kept, they would impair the port twice, or keep a resumed port
    suspended.  A clsact qdisc stays (it may hold others' filters); so does anything
    of other handles or preferences, and any failure (no tc, no interface)."""
    code, out = run(["qdisc", "show", "dev", ifname])
    if code != 0:
        return
    if f"netem {OLD_TC_HANDLE} root" in out:
        run(["qdisc", "del", "dev", ifname, "root", "handle", OLD_TC_HANDLE])
    if "qdisc clsact" in out:
        for where in ("ingress", "egress"):
            code, found = run(["filter", "show", "dev", ifname, where])
            if code == 0 and f"pref {OLD_TC_PREF} " in found:
                run(["filter", "del", "dev", ifname, where, "pref", OLD_TC_PREF])


def stat_values(nest: nla | None) -> dict[str, int]:
    """A COUNTERS or DROPS nest as {name: value}."""
    if nest is None:
        return {}
    return {s.get_attr("VNET_A_STAT_NAME"): s.get_attr("VNET_A_STAT_VALUE")
            for s in nest.get_attrs("VNET_A_STAT")}


class _AsyncVnetSocket(AsyncGenericNetlinkSocket):
    # A missing family is an answer (the module is not loaded), reported as a
    # DatapathError; pyroute2 would also log it at error level onto stderr.
    module_err_level = "debug"


class VnetSocket(GenericNetlinkSocket):
    """A generic netlink socket bound to family "vnet", with extended acks on."""

    async_class = _AsyncVnetSocket

    def __init__(self, family: str = VNET_GENL_NAME, netns: str | None = None) -> None:
        # netns: a named network namespace to bind in (never created: flags=0) rather
        # than the caller's, for tools that watch several simulated hosts at once.
        if netns is None:
            super().__init__(ext_ack=True)
        else:
            super().__init__(ext_ack=True, netns=netns, flags=0)
        try:
            self.bind(family, vnetmsg)
        except NetlinkError as e:
            self.close()
            if e.code == errno.ENOENT:
                raise DatapathError("ENOENT", NOT_LOADED) from None
            raise netlink_error(e, "cannot reach the vnet kernel module") from None


def module_loaded() -> bool:
    """True if the family "vnet" resolves here, i.e. the module is loaded."""
    try:
        VnetSocket().close()
    except DatapathError:
        return False
    return True


def ext_ack(exc: NetlinkError) -> str | None:
    """The kernel's extended-ack message of a failed request, if it sent one.

    pyroute2 puts the ext-ack text where the strerror text would be, so a message
    equal to strerror means there was none."""
    text = exc.args[1] if len(exc.args) > 1 else None
    if not text or text == os.strerror(exc.code):
        return None
    return str(text)


def netlink_error(exc: NetlinkError, what: str, known: Mapping[int, str] | None = None) -> DatapathError:
    """A failed request as a DatapathError.  For an errno that means what it means for
    vnetd (`known`), vnetd's text, so `vn` says the same whatever the datapath; else
    `what` and the kernel's extended-ack text, or strerror if it sent none."""
    code = errno.errorcode.get(exc.code, "EIO")
    text = (known or {}).get(exc.code)
    if text is None and exc.code == errno.EPERM and ext_ack(exc) is None:  # uns-admin-perm
        text = (f"{what}: {os.strerror(exc.code)}: the vnet module's commands need root (or CAP_NET_ADMIN)"
                f"{user_namespace_note(MODULE_NOT_OWNED)}")
    if text is None:
        text = f"{what}: {ext_ack(exc) or os.strerror(exc.code)}"
    return DatapathError(code, text)


class MacEvents:
    """The module's MAC notifications (VNET_CMD_MAC_EVENT) as MacChanges.

    The module tells each table's changes on its own: a MAC that goes from one table
    to the other is first REMOVED from where it was, then LEARNED where it is (an
    announce for a local MAC; a local MAC new here, after its VARP entry).  The
    removal is held here and becomes the `old` of the learning that follows, so a
    move reads as one change, as vnetd reports it."""

    HELD = 4096  # removals held at most (one never followed by a learning is forgotten)

    def __init__(self) -> None:
        self.removed: OrderedDict[tuple[bytes, bytes], str] = OrderedDict()

    def change(self, event: int, table: int, vnet: bytes, mac: bytes, addr: str | None,
               old: str | None) -> MacChange | None:
        key = (vnet, mac)
        place = addr if table == VNET_MAC_TABLE_VARP else LOCAL
        if event == VNET_MAC_EVENT_REMOVED:
            self.removed[key] = place
            self.removed.move_to_end(key)
            if len(self.removed) > self.HELD:
                self.removed.popitem(last=False)
            return None
        was: str | None
        if event == VNET_MAC_EVENT_LEARNED:
            was = self.removed.pop(key, None)
        elif event == VNET_MAC_EVENT_MOVED:
            was = old
        elif event == VNET_MAC_EVENT_EXPIRED:
            self.removed.pop(key, None)
            was, place = place, None
        else:
            return None
        if was == place:
            return None
        return MacChange(str(VnetId.from_bytes(vnet)), format_mac(mac), was, place)


def _name(values: tuple[str, ...], number: int | None) -> str:
    return values[number] if number is not None and 0 <= number < len(values) else str(number)


def _endpoint_spec(m: vnetmsg) -> EndpointSpec:
    """The endpoint an ENDPOINT_GET message describes (the module checked it when added)."""
    port, rport = m.get_attr("VNET_A_PORT"), m.get_attr("VNET_A_REMOTE_PORT")
    return EndpointSpec(_name(ENDPOINT_KINDS, m.get_attr("VNET_A_ENDPOINT_KIND")),
                        local=(m.get_attr("VNET_A_ADDR"), port) if port else None,
                        remote=(m.get_attr("VNET_A_REMOTE_ADDR"), rport) if rport else None)


def _field(record: Record, name: str) -> str:
    return next(f[1] for f in record[1:] if f[0] == name)



class KmodClient(Datapath):
    """The Datapath interface, carried out by the vnet kernel module in this namespace."""

    kind = "kmod"

    def __init__(self, sock: VnetSocket | None = None,
                 tc_runner: Callable[[list[str]], tuple[int, str]] = run_tc) -> None:
        self.sock = sock or VnetSocket()
        #: How tc is run to take off what `vn` gave ports before the module did link
        #: control itself (drop_old_tc; a test passes a fake).
        self.tc = tc_runner

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> KmodClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests ------------------------------------------------------------------

    def _call(self, cmd: int, attrs: list, what: str, known: Mapping[int, str] | None = None,
              dump: bool = False) -> list[vnetmsg]:
        msg = vnetmsg()
        msg["cmd"] = cmd
        msg["version"] = VNET_GENL_VERSION
        msg["attrs"] = attrs
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        try:
            replies = self.sock.nlm_request(msg, msg_type=self.sock.prid, msg_flags=flags)
        except NetlinkError as e:
            raise netlink_error(e, what, known) from None
        return [r for r in replies if isinstance(r, vnetmsg)]

    def settings(self) -> vnetmsg:
        """The VNET_CMD_GET reply: group, port, TTL, sweeps, underlay, counters, drops."""
        replies = self._call(VNET_CMD_GET, [], "cannot read the vnet module's settings")
        if not replies:
            raise DatapathError("EPROTO", "the vnet module sent no reply to VNET_CMD_GET")
        return replies[0]

    def table_stats(self) -> dict[str, dict]:
        """The VARP cache's and the vif table's sizes and longest hash chains, and each
        vnet's share: {"varp": {"entries": N, "longest_chain": M}, "vifs": {...},
        "vnets": {"0000:...:0097": {"varp": N, "vifs": M}, ...}}.  What a flood of MACs
        did to the lookup every received frame makes, and to each vnet's room."""
        s = self.settings()
        out: dict[str, dict] = {
            name: {"entries": s.get_attr(f"VNET_A_{attr}_ENTRIES") or 0,
                   "longest_chain": s.get_attr(f"VNET_A_{attr}_LONGEST_CHAIN") or 0}
            for name, attr in (("varp", "VARP"), ("vifs", "VIF"))}
        out["vnets"] = {str(VnetId.from_bytes(m.get_attr("VNET_A_ID"))):
                        {"varp": m.get_attr("VNET_A_VARP_ENTRIES"), "vifs": m.get_attr("VNET_A_VIF_ENTRIES")}
                        for m in self._running()}
        return out

    def _running(self) -> list[vnetmsg]:
        return self._call(VNET_CMD_VNET_GET, [], "cannot list the vnet module's vnets", dump=True)

    def set_address(self, addr: str) -> None:
        """Set the underlay address (one of this namespace's IPv4 addresses)."""
        addr = parse_ipv4(addr)
        try:
            self._call(VNET_CMD_SET, [["VNET_A_ADDR", addr]], f"cannot set the underlay address {addr}")
        except DatapathError as e:
            if e.code != "EADDRNOTAVAIL":
                raise
            with IPRoute() as ipr:  # say what would do, as vnetd does
                have = sorted(a for _, a, _, _ in netdev.ipv4_addresses(ipr))
            raise DatapathError(e.code, f"{addr} is not an address of this host "
                                f"(have: {', '.join(have) or 'none'})") from None

    def _ensure_address(self) -> None:
        """Give the module an underlay address if it has none, by vnetd's rule."""
        if self.settings().get_attr("VNET_A_ADDR") is not None:
            return
        with IPRoute() as ipr:
            try:
                addr = netdev.pick_address(ipr, None, option=None)
            except DatapathError as e:
                raise DatapathError(e.code, f"the vnet module needs an underlay address: {e.message}") from None
        self.set_address(addr)

    # ---- vnets ------------------------------------------------------------------------

    def _check_free(self, cfg: VnetConfig, ipr: IPRoute) -> None:
        """vnetd's conflict checks and texts, against the vnets the module runs."""
        bridge = cfg.bridge
        for m in self._running():
            other = VnetId.from_bytes(m.get_attr("VNET_A_ID"))
            ifname = m.get_attr("VNET_A_IFNAME")
            if other == cfg.id:
                raise DatapathError("EEXIST", f"vnet {cfg.id} already exists")
            if ifname == cfg.vnetif:
                raise DatapathError("EEXIST", f"vnetif {cfg.vnetif} is already used by vnet {other}")
            # Two vnets on one bridge would merge their LANs.
            if bridge is not None and netdev.bridge_of(ipr, ifname) == bridge:
                raise DatapathError("EEXIST", f"bridge {bridge} is already used by vnet {other}")
        if netdev.link_index(ipr, cfg.vnetif) is not None:
            raise DatapathError("EEXIST", f"a device named {cfg.vnetif} already exists on this host")

    def vnet_add(self, cfg: VnetConfig) -> None:
        held = keys.for_vnet(cfg.id, cfg.security, cfg.key_files)
        mtu = cfg.mtu
        bridge = cfg.bridge
        ports = cfg.ports
        with IPRoute() as ipr:
            self._check_free(cfg, ipr)
            for ifname in ports:  # before anything is made
                if ifname in (cfg.vnetif, bridge) or ports.count(ifname) > 1:
                    raise DatapathError("EINVAL", f"cannot make {ifname} a port of vnet {cfg.id}: "
                                        "it is named twice in the vnet's configuration")
                self._check_port(ipr, cfg.id, ifname)
            self._ensure_address()
            attrs = [["VNET_A_ID", cfg.id.packed], ["VNET_A_IFNAME", cfg.vnetif],
                     ["VNET_A_ENCAP", ENCAP_VALUES.index(cfg.encapsulation)],
                     ["VNET_A_SECURITY", SECURITY_VALUES.index(cfg.security)],
                     ["VNET_A_MTU", mtu]]
            if cfg.group:
                attrs.append(["VNET_A_GROUP", cfg.group])
            if held:
                attrs.append(keys_attr(held))
            self._call(VNET_CMD_VNET_ADD, attrs, f"cannot create vnet {cfg.id}")
            try:
                netdev.isolate_port(cfg.vnetif)
                if bridge is None:  # up on its own, like a port
                    index = netdev.link_index(ipr, cfg.vnetif)
                    ipr.link("set", index=index, state="up")
                else:
                    netdev.ensure_bridge(ipr, bridge)
                    netdev.enslave(ipr, cfg.vnetif, bridge, mtu=mtu)
                for ifname in ports:
                    self._port_add(ipr, cfg.id, ifname)
                for ifname, link in cfg.links:  # the module keeps it, attached or waiting
                    self.port_set(cfg.id, ifname, link)
                for spec in cfg.endpoints:
                    self.endpoint_add(cfg.id, spec)
            except (DatapathError, NetlinkError) as e:
                try:  # no half-made vnet: the state will not record it (its ports and endpoints go with it)
                    self.vnet_del(cfg.id)
                except DatapathError:
                    pass
                if isinstance(e, NetlinkError):
                    raise DatapathError("EIO", f"cannot bring {cfg.vnetif} up: {e.args[1]}") from None
                raise

    def vnet_keys(self, vid: VnetId, key_files: tuple[str, ...]) -> None:
        running = [m for m in self._running() if m.get_attr("VNET_A_ID") == vid.packed]
        if not running:
            raise DatapathError("ENOENT", f"vnet {vid} does not exist")
        security = _name(SECURITY_VALUES, running[0].get_attr("VNET_A_SECURITY"))
        if security == "none":
            raise DatapathError("EINVAL", f"vnet {vid} has (security none) and uses no keys")
        held = keys.for_vnet(vid, security, key_files)
        self._call(VNET_CMD_KEYS_SET, [["VNET_A_ID", vid.packed], keys_attr(held)],
                   f"cannot set the keys of vnet {vid}", {errno.ENOENT: f"vnet {vid} does not exist"})

    def vnet_del(self, vid: VnetId) -> None:
        self._call(VNET_CMD_VNET_DEL, [["VNET_A_ID", vid.packed]], f"cannot delete vnet {vid}",
                   {errno.ENOENT: f"vnet {vid} does not exist"})

    def vnets(self) -> list[Record]:
        out = []
        with IPRoute() as ipr:
            for m in sorted(self._running(), key=lambda m: m.get_attr("VNET_A_ID")):
                ifname = m.get_attr("VNET_A_IFNAME")
                held = key_ids(m.get_attr("VNET_A_KEYS"))
                extra = {"keys": held} if held else {}
                out.append(records.vnet_record(
                    VnetId.from_bytes(m.get_attr("VNET_A_ID")), ifname,
                    _name(SECURITY_VALUES, m.get_attr("VNET_A_SECURITY")), m.get_attr("VNET_A_HEADER"),
                    bridge=netdev.bridge_of(ipr, ifname) or "",
                    encapsulation=_name(ENCAP_VALUES, m.get_attr("VNET_A_ENCAP")),
                    rx_packets=m.get_attr("VNET_A_RX_PACKETS"), tx_packets=m.get_attr("VNET_A_TX_PACKETS"),
                    rx_bytes=m.get_attr("VNET_A_RX_BYTES"), tx_bytes=m.get_attr("VNET_A_TX_BYTES"),
                    **extra, **group_field(m.get_attr("VNET_A_GROUP"))))
        return out

    # ---- ports ------------------------------------------------------------------------

    def _check_port(self, ipr: IPRoute, vid: VnetId, ifname: str) -> None:
        """spec14's refusals with a message naming the interface, before the module is
        asked (which checks the same again, under RTNL, for the races)."""
        what = f"cannot make {ifname} a port of vnet {vid}"
        try:
            ifname_check(ifname, "the interface name")
        except AddressError as e:
            raise DatapathError("EINVAL", f"{what}: {e}") from None
        for p in self.ports():
            if _field(p, "ifname") == ifname:
                raise DatapathError("EEXIST", f"{what}: it is a port of vnet {_field(p, 'vnet')} already")
        for m in self._running():
            other = VnetId.from_bytes(m.get_attr("VNET_A_ID"))
            vnetif = m.get_attr("VNET_A_IFNAME")
            if vnetif == ifname:
                raise DatapathError("EEXIST", f"{what}: it is the vnet device of vnet {other}")
            if netdev.bridge_of(ipr, vnetif) == ifname:
                raise DatapathError("EEXIST", f"{what}: it is the bridge of vnet {other}")
        index = netdev.link_index(ipr, ifname)
        if index is None:
            return  # it waits for an interface of that name
        if netdev.link_kind(ipr, index) == "bridge":
            raise DatapathError("EBUSY", f"{what}: it is a bridge")
        master = netdev.bridge_of(ipr, ifname)
        if master is not None:
            raise DatapathError("EBUSY", f"{what}: it has a master already ({master})")
        have = sorted(a for name, a, _, _ in netdev.ipv4_addresses(ipr) if name == ifname)
        if have:
            raise DatapathError("EBUSY", f"{what}: it has IPv4 addresses ({', '.join(have)})")

    def _port_add(self, ipr: IPRoute, vid: VnetId, ifname: str) -> None:
        self._check_port(ipr, vid, ifname)
        if netdev.link_index(ipr, ifname) is not None:
            netdev.isolate_port(ifname)  # before the module brings it up
        self._call(VNET_CMD_PORT_ADD, [["VNET_A_ID", vid.packed], ["VNET_A_IFNAME", ifname]],
                   f"cannot make {ifname} a port of vnet {vid}", {errno.ENOENT: f"vnet {vid} does not exist"})

    def port_add(self, vid: VnetId, ifname: str) -> None:
        """Make interface `ifname` (maybe not there yet) a port of vnet `vid`."""
        with IPRoute() as ipr:
            self._port_add(ipr, vid, ifname)

    def _port_call(self, cmd: int, vid: VnetId, ifname: str, attrs: list, what: str) -> None:
        """A command on one port; the module's one errno for two misses (no such vnet,
        no such port) told apart."""
        try:
            self._call(cmd, [["VNET_A_ID", vid.packed], ["VNET_A_IFNAME", ifname], *attrs], what)
        except DatapathError as e:
            if e.code != "ENOENT":
                raise
            if not any(m.get_attr("VNET_A_ID") == vid.packed for m in self._running()):
                raise DatapathError("ENOENT", f"vnet {vid} does not exist") from None
            raise DatapathError("ENOENT", f"vnet {vid} has no port {ifname}") from None

    def port_set(self, vid: VnetId, ifname: str, link: LinkControl) -> None:
        """PORT_SET: the module holds the port's link control itself (kmod/linkctl.c)
        while the port exists, waiting or attached, so an interface made again has it
        with no command."""
        drop_old_tc(ifname, self.tc)
        self._port_call(VNET_CMD_PORT_SET, vid, ifname, link_attrs(link),
                        f"cannot set the link control of port {ifname} of vnet {vid}")

    def port_del(self, vid: VnetId, ifname: str) -> None:
        self._port_call(VNET_CMD_PORT_DEL, vid, ifname, [], f"cannot remove port {ifname} of vnet {vid}")

    def ports(self) -> list[Record]:
        found = self._call(VNET_CMD_PORT_GET, [], "cannot list the ports", dump=True)
        # The module lists each vnet's ports in the order they were added.
        found.sort(key=lambda m: m.get_attr("VNET_A_ID"))
        return [records.port_record(VnetId.from_bytes(m.get_attr("VNET_A_ID")), m.get_attr("VNET_A_IFNAME"),
                                    _name(PORT_STATES, m.get_attr("VNET_A_PORT_STATE")),
                                    m.get_attr("VNET_A_IFINDEX"), m.get_attr("VNET_A_RX_PACKETS"),
                                    m.get_attr("VNET_A_TX_PACKETS"), m.get_attr("VNET_A_RX_BYTES"),
                                    m.get_attr("VNET_A_TX_BYTES"), link_of(m).to_sxp())
                for m in found]

    # ---- vifs -------------------------------------------------------------------------

    def vif_add(self, vid: VnetId, mac: bytes) -> None:
        self._call(VNET_CMD_VIF_ADD, [["VNET_A_ID", vid.packed], ["VNET_A_MAC", mac]],
                   f"cannot add vif {format_mac(mac)} to vnet {vid}", {errno.ENOENT: f"vnet {vid} does not exist"})

    def vif_del(self, vid: VnetId, mac: bytes) -> None:
        try:
            self._call(VNET_CMD_VIF_DEL, [["VNET_A_ID", vid.packed], ["VNET_A_MAC", mac]],
                       f"cannot delete vif {format_mac(mac)} of vnet {vid}")
        except DatapathError as e:
            if e.code != "ENOENT":
                raise
            # One errno for two misses: tell them apart as vnetd does.
            if not any(m.get_attr("VNET_A_ID") == vid.packed for m in self._running()):
                raise DatapathError("ENOENT", f"vnet {vid} does not exist") from None
            raise DatapathError("ENOENT", f"no vif {format_mac(mac)} on vnet {vid}") from None

    def vifs(self) -> list[Record]:
        s = self.settings()
        out = [records.viftable_record(s.get_attr("VNET_A_TTL"), s.get_attr("VNET_A_SWEEPS"))]
        found = self._call(VNET_CMD_VIF_GET, [], "cannot list the vifs", dump=True)
        for m in sorted(found, key=lambda m: (m.get_attr("VNET_A_ID"), m.get_attr("VNET_A_MAC"))):
            out.append(records.vif_record(m.get_attr("VNET_A_ID"), m.get_attr("VNET_A_MAC"),
                                          m.get_attr("VNET_A_AGE_MS") / 1000))
        return out

    # ---- endpoints: QEMU socket NICs (doc/endpoints.md) -------------------------------

    @staticmethod
    def _endpoint_attrs(vid: VnetId, spec: EndpointSpec) -> list:
        attrs = [["VNET_A_ID", vid.packed], ["VNET_A_ENDPOINT_KIND", ENDPOINT_KINDS.index(spec.kind)]]
        if spec.local is not None:
            attrs += [["VNET_A_ADDR", spec.local[0]], ["VNET_A_PORT", spec.local[1]]]
        if spec.remote is not None:
            attrs += [["VNET_A_REMOTE_ADDR", spec.remote[0]], ["VNET_A_REMOTE_PORT", spec.remote[1]]]
        return attrs

    def endpoint_add(self, vid: VnetId, spec: EndpointSpec) -> None:
        """Open an endpoint of vnet `vid`; vnetd's words for the errors both can meet."""
        if spec.local is not None:
            what = f"endpoint {spec}: cannot bind {spec.local[0]}:{spec.local[1]}"
        else:
            what = f"endpoint {spec}: cannot open"
        self._call(VNET_CMD_ENDPOINT_ADD, self._endpoint_attrs(vid, spec), what,
                   {errno.ENOENT: f"vnet {vid} does not exist",
                    errno.EEXIST: f"endpoint ({spec}) is already in vnet {vid}",
                    errno.EADDRINUSE: f"{what}: {os.strerror(errno.EADDRINUSE)}",
                    errno.EADDRNOTAVAIL: f"{what}: {os.strerror(errno.EADDRNOTAVAIL)}"})

    def endpoint_del(self, vid: VnetId, spec: EndpointSpec) -> None:
        try:
            self._call(VNET_CMD_ENDPOINT_DEL, self._endpoint_attrs(vid, spec),
                       f"cannot close endpoint ({spec}) of vnet {vid}")
        except DatapathError as e:
            if e.code != "ENOENT":
                raise
            # One errno for two misses: tell them apart as vnetd does.
            if not any(m.get_attr("VNET_A_ID") == vid.packed for m in self._running()):
                raise DatapathError("ENOENT", f"vnet {vid} does not exist") from None
            found = self._call(VNET_CMD_ENDPOINT_GET, [], "cannot list the endpoints", dump=True)
            have = ", ".join(f"({_endpoint_spec(m)})" for m in found if m.get_attr("VNET_A_ID") == vid.packed)
            raise DatapathError("ENOENT", f"vnet {vid} has no endpoint ({spec}) "
                                f"(its endpoints: {have or 'none'})") from None

    def endpoints(self) -> list[Record]:
        found = self._call(VNET_CMD_ENDPOINT_GET, [], "cannot list the endpoints", dump=True)
        # The module lists each vnet's endpoints in the order they were added.
        found.sort(key=lambda m: m.get_attr("VNET_A_ID"))
        out = []
        for m in found:
            c = stat_values(m.get_attr("VNET_A_COUNTERS"))
            spec = _endpoint_spec(m)
            local = f"{spec.local[0]}:{spec.local[1]}" if spec.local else "-"
            remote = f"{spec.remote[0]}:{spec.remote[1]}" if spec.remote else "-"
            out.append(records.endpoint_record(
                VnetId.from_bytes(m.get_attr("VNET_A_ID")), spec.kind,
                local, remote, _name(ENDPOINT_STATES, m.get_attr("VNET_A_ENDPOINT_STATE")),
                c.get("rx_packets", 0), c.get("tx_packets", 0), c.get("rx_bytes", 0), c.get("tx_bytes", 0),
                records.endpoint_drops(c)))
        return out

    # ---- peers ------------------------------------------------------------------------

    def peer_add(self, addr: str, port: int) -> None:
        self._ensure_address()
        self._call(VNET_CMD_PEER_ADD, [["VNET_A_ADDR", addr], ["VNET_A_PORT", port]],
                   f"cannot add peer {addr}")

    def peer_del(self, addr: str) -> None:
        self._call(VNET_CMD_PEER_DEL, [["VNET_A_ADDR", addr]], f"cannot delete peer {addr}",
                   {errno.ENOENT: f"{addr} is not a peer"})

    def peers(self) -> list[Record]:
        found = self._call(VNET_CMD_PEER_GET, [], "cannot list the peers", dump=True)
        return [records.peer_record(m.get_attr("VNET_A_ADDR"), m.get_attr("VNET_A_PORT"),
                                    m.get_attr("VNET_A_TX_PACKETS"), m.get_attr("VNET_A_RX_PACKETS"))
                for m in sorted(found, key=lambda m: socket.inet_aton(m.get_attr("VNET_A_ADDR")))]

    # ---- VARP -------------------------------------------------------------------------

    def varp_flush(self) -> None:
        self._call(VNET_CMD_VARP_FLUSH, [], "cannot flush the VARP cache")

    def varp(self) -> list[Record]:
        s = self.settings()
        out = [records.varp_record(s.get_attr("VNET_A_IFNAME") or "", s.get_attr("VNET_A_MCADDR"),
                                   s.get_attr("VNET_A_ADDR") or "0.0.0.0", s.get_attr("VNET_A_PORT"),
                                   "etherip_in_udp", s.get_attr("VNET_A_TTL"))]
        found = self._call(VNET_CMD_VARP_GET, [], "cannot list the VARP cache", dump=True)
        for m in sorted(found, key=lambda m: (m.get_attr("VNET_A_ID"), m.get_attr("VNET_A_MAC"))):
            out.append(records.ventry_record(m.get_attr("VNET_A_ID"), m.get_attr("VNET_A_MAC"),
                                             m.get_attr("VNET_A_ADDR"), m.get_attr("VNET_A_AGE_MS") / 1000))
        return out

    def set_mcaddr(self, addr: str) -> None:
        self._call(VNET_CMD_SET, [["VNET_A_MCADDR", addr]], f"cannot switch to group {addr}",
                   {errno.EINVAL: f"{addr} is not a multicast address (224.0.0.0/4)"})

    def mac_changes(self, opened: Callable[[], None] | None = None) -> Iterator[MacChange]:
        """The module's multicast group "monitor" of this namespace, on a socket of its own."""
        sock = VnetSocket()
        try:
            try:
                sock.add_membership(VNET_MCGRP_MONITOR)
            except PermissionError:  # the group is CAP_NET_ADMIN's (kmod/vnet.yaml)
                raise DatapathError("EPERM", "cannot listen to the vnet module's MAC events: "
                                    f"{os.strerror(errno.EPERM)}: the vnet module's commands need root "
                                    f"(or CAP_NET_ADMIN){user_namespace_note(MODULE_NOT_OWNED)}") from None
            except (KeyError, OSError):
                raise DatapathError("EOPNOTSUPP", "this vnet module sends no MAC events: load a newer "
                                    "one ('vn rmmod', then 'vn insmod')") from None
            if opened is not None:
                opened()
            events = MacEvents()
            while True:
                for msg in sock.get():
                    if not isinstance(msg, vnetmsg) or msg["cmd"] != VNET_CMD_MAC_EVENT:
                        continue
                    change = events.change(msg.get_attr("VNET_A_MAC_EVENT"), msg.get_attr("VNET_A_MAC_TABLE"),
                                           msg.get_attr("VNET_A_ID"), msg.get_attr("VNET_A_MAC"),
                                           msg.get_attr("VNET_A_ADDR"), msg.get_attr("VNET_A_OLD_ADDR"))
                    if change is not None:
                        yield change
        finally:
            sock.close()

    def endpoint_frames(self, opened: Callable[[], None] | None = None) -> Iterator[EndpointFrame]:
        """The module's multicast group "capture" of this namespace (vnet.datapath.kmod.capture)."""
        group = self.sock.mcast_groups.get(VNET_MCGRP_CAPTURE)
        if group is None:
            raise DatapathError("EOPNOTSUPP", "this vnet module shows no endpoint frames: load a newer "
                                "one ('vn rmmod', then 'vn insmod')")
        try:
            yield from endpoint_frames(self.sock.prid, group, opened)
        except PermissionError:  # the group is CAP_NET_ADMIN's (kmod/vnet.yaml)
            raise DatapathError("EPERM", "cannot capture the vnet module's endpoint frames: "
                                f"{os.strerror(errno.EPERM)}: the vnet module's commands need root "
                                f"(or CAP_NET_ADMIN){user_namespace_note(MODULE_NOT_OWNED)}") from None

    def stats(self) -> list[Record]:
        s = self.settings()  # the module leaves out counters that are 0, as vnetd does
        return [records.counters_record("counters", stat_values(s.get_attr("VNET_A_COUNTERS"))),
                records.counters_record("drops", stat_values(s.get_attr("VNET_A_DROPS")))]
