"""vnetd: the user-space vnet datapath and control daemon, put together.

One tap device per vnet, enslaved to the vnet's bridge; frames read from it are
encapsulated (EtherIP-in-UDP on port 1798, or raw EtherIP) and sent to the host
holding the destination MAC, or flooded to the multicast group and forwarded to
peers.  Received frames are checked, learned from and written to the vnet's tap.

The pieces, each in its own module: the underlay address and sockets (`underlay`),
the per-vnet state (`vnets`), the tables (`tables`), the packet rules (`transmit`,
`receive`), the control server (`server`) and the epoll loop (`loop`).  This module
wires them together and carries out the Datapath interface that `vn` drives.  State
that must survive a restart (vnets, peers, group) is read from the state directory
at start; `vn` writes it.
"""
from __future__ import annotations

import errno
import functools
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
from pyroute2 import IPRoute

import sxp
from vnet import __version__
from vnet.control import metrics, records
from vnet.control.records import group_field
from vnet.control.datapath import Datapath, Record
from vnet.control.events import LOCAL, MacChange
from vnet.control.protocol import resolve_socket
from vnet.control.restore import restore
from vnet.datapath.fastpath import fastpath
from vnet.datapath.vnetd.capture import open_capture
from vnet.datapath.vnetd.endpoint import EndpointAttachment
from vnet.datapath.vnetd.linkctl import PortLink
from vnet.datapath.vnetd.loop import Clock, Loop, drain
from vnet.datapath.vnetd.metrics import MetricsServer
from vnet.datapath.vnetd.ports import LinkMonitor, Port
from vnet.datapath.vnetd.receive import Receive
from vnet.datapath.vnetd.server import ControlServer, Stream
from vnet.datapath.vnetd.tables import SWEEP_INTERVAL, Peer, Tables
from vnet.datapath.vnetd.transmit import Transmit
from vnet.datapath.vnetd.underlay import Sockets, Underlay
from vnet.datapath.vnetd.vnets import Vnet
from vnet.errors import DatapathError, VnetError
from vnet.host import netdev, privilege
from vnet.host.netdev import SUPER_FRAME_MAX, pick_address
from vnet.host.notify import notify
from vnet.model import keys
from vnet.model.addr import format_mac, parse_ipv4
from vnet.model.config import ConfigError, VnetConfig
from vnet.model.linkctl import LinkControl
from vnet.model.endpoint import EndpointSpec
from vnet.model.peer import check_peer, check_peer_room
from vnet.model.state import State, StateStore, resolve_state_dir
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire
from vnet.wire import stats
from vnet.wire.stats import D_LINK_SUSPENDED, D_RECV_ERROR, D_TAP_READ_ERROR

log = logging.getLogger("vnetd")
#: Set, it makes the fast path's probe fail with its value as the reason: how the
#: tests see vnetd fall back (doc/fastpath.md).
FAST_REFUSED_ENV = "VNET_FASTPATH_REFUSE"


class Vnetd(Datapath):
    """The daemon; also the in-process Datapath that the command language drives."""

    kind = "vnetd"

    def __init__(self, address: str, mcaddr: str = wire.DEFAULT_GROUP, port: int = wire.PORT,
                 ttl: int = wire.DEFAULT_TTL, offload: bool = True, fast: bool = True,
                 fast_refused: str | None = None) -> None:
        self.ipr = IPRoute()
        self.offload = offload
        self.here = Underlay.find(self.ipr, address, mcaddr, port, ttl)
        self.tables = Tables()
        self.clock = Clock()
        self.loop = Loop(self._sweep)
        self.sockets = Sockets(self.here)
        self.tx = Transmit(self.here, self.sockets.udp, self.sockets.etherip, self.tables, self.clock,
                           offload=offload, etherip_frag=self.sockets.etherip_frag)
        self.rx = Receive(self.here, self.sockets.ip, self.tables, self.clock, self.tx)
        self.server = ControlServer(self.loop, self)
        self.metrics = MetricsServer(self.loop, lambda: metrics.render(self))
        self.server.streams["monitor"] = self._monitor
        self.server.streams["capture"] = functools.partial(open_capture, self.tables, self.loop, self._hold_fast)
        # One receive buffer for every socket: a packet is handled before the next read.
        self.buf = bytearray(65536)
        self.mv = memoryview(self.buf)
        self.loop.watch(self.sockets.udp.fileno(), self._udp_readable)
        self.loop.watch(self.sockets.etherip.fileno(), self._raw_readable)
        self._watch_group()
        self.links = LinkMonitor()
        self.loop.watch(self.links.fileno(), self._links_changed)
        #: The last reason each waiting port could not be attached, to log it once.
        self.port_trouble: dict[str, str] = {}
        self.fast: fastpath.FastPath | None = None
        #: Captures of a vnet's tunnel point open now, by vnet id: it takes the slow
        #: path meanwhile, so that they see every frame (doc/fastpath.md).
        self.fast_holds: dict[bytes, int] = {}
        #: Vnets whose MTU leaves no room on the underlay, said once each.
        self.fast_mtu_said: set[bytes] = set()
        #: Why there is no fast path ("" while there is one).
        self.fast_off = self._start_fast(fast, fast_refused)

    def _start_fast(self, wanted: bool, refused: str | None) -> str:
        """Load and attach the fast path (doc/fastpath.md), or say in one line why not;
        vnetd then carries every frame itself, as without one.  `refused` makes the
        probe fail with that reason (the tests' way to see the fallback)."""
        if not wanted:
            return "turned off (--no-fastpath)"
        if not self.offload:
            return "needs offload (--no-offload given)"
        try:
            if refused:
                raise OSError(0, refused)
            if not self.here.ifindex:
                raise OSError(0, f"no underlay device has {self.here.address}")
            fp = fastpath.FastPath(self.here.address_b, self.here.ifindex, self.here.device, self.here.port,
                                   wire.DEFAULT_TTL, SUPER_FRAME_MAX,
                                   links=functools.partial(netdev.link_stack, self.ipr))
        except OSError as e:
            reason = fastpath.probe_error(e)
            log.warning("fast path off, every frame through vnetd: %s", reason)
            return reason
        self.fast = fp
        self.tables.varp.mirror = fastpath.RemoteMirror(fp, self.tables.supers.addrs)
        self.tables.vifs.mirror = fastpath.LocalMirror(fp)
        self.tables.supers.changed = fp.super_changed
        log.warning("fast path on: underlay %s, partial checksums completed by %s", self.here.device,
                    fastpath.CSUM_MODES[fp.csum])
        return ""

    def _fast_sync(self, v: Vnet) -> None:
        """Serve v through the fast path exactly while it can be: a plain UDP vnet whose
        one attachment is its tap (ports and endpoints are switched by vnetd)."""
        fp = self.fast
        if fp is None:
            return
        want = (v.udp and not v.level and not v.switching and not self.fast_holds.get(v.vid)
                and self.tables.vnets.get(v.vid) is v)
        if not want:
            fp.unserve(v.vid)
            return
        if v.vid in fp.served:
            return
        index = netdev.link_index(self.ipr, v.cfg.vnetif)
        try:
            if index is None or not fp.serve(v.vid, index):
                return
        except OSError as e:
            log.warning("vnet %s: slow path only: %s", v.cfg.id, e)
            return
        self._check_fast_mtu(v)
        # What the tables hold of v already, told to their mirrors as a change would be.
        varp, vifs = self.tables.varp, self.tables.vifs
        for (vid, mac), e in list(varp.entries.items()):
            if vid == v.vid:
                varp.mirror.set(vid, mac, e.addr)
        for vid, mac in list(vifs.entries):
            if vid == v.vid:
                vifs.mirror.set(vid, mac, None)

    def _set_attachments(self, v: Vnet) -> None:
        """After a port or endpoint came or went: v's attachments, and its path (the
        fast path serves a vnet whose one attachment is its tap)."""
        v.set_attachments()
        self._fast_sync(v)

    def _check_fast_mtu(self, v: Vnet) -> None:
        """Say once per vnet when its full-size frames cannot take the fast path: they go
        through vnetd as IP fragments and, in a TCP stream, arrive out of order with
        the fast path's packets (doc/fastpath.md, "MTU")."""
        links = self.ipr.link("get", index=self.here.ifindex)
        underlay = links[0].get_attr("IFLA_MTU") if links else None
        room = underlay - v.cfg.header if underlay else None
        if room is None or v.mtu <= room or v.vid in self.fast_mtu_said:
            return
        self.fast_mtu_said.add(v.vid)
        log.warning("vnet %s: IP packets over %d bytes take vnetd and IP fragments (underlay %s MTU %d); "
                    "an underlay MTU of %d, or --mtu %d, keeps every frame on the fast path",
                    v.cfg.id.short or v.cfg.id, room, self.here.device, underlay, v.mtu + v.cfg.header, room)

    def _hold_fast(self, vid: bytes) -> Callable[[], None]:
        """Keep a vnet on the slow path until what this returns is called."""
        self.fast_holds[vid] = self.fast_holds.get(vid, 0) + 1
        v = self.tables.vnets.get(vid)
        if v is not None:
            self._fast_sync(v)

        def release() -> None:
            n = self.fast_holds.pop(vid, 1) - 1
            if n:
                self.fast_holds[vid] = n
            v = self.tables.vnets.get(vid)
            if v is not None:
                self._fast_sync(v)
        return release

    def _fast_path(self, v: Vnet) -> tuple[str, dict]:
        """A vnet record's `path` and, on the fast path, its counters there."""
        fp = self.fast
        if fp is None:
            return "slow", {"path_reason": f"fast path off: {self.fast_off}"}
        fields = {}
        if v.vid not in fp.served:
            fields["path_reason"] = ("secure vnet" if v.level else "raw EtherIP" if not v.udp
                                     else "switched by vnetd (ports or endpoints)" if v.switching
                                     else "a capture of its tunnel point is open" if self.fast_holds.get(v.vid)
                                     else "no fast path slot")
        tx, txb, rx, rxb = fp.counters(v.vid)
        fields.update(fast_rx_packets=rx, fast_tx_packets=tx, fast_rx_bytes=rxb, fast_tx_bytes=txb)
        return ("fast" if v.vid in fp.served else "slow"), fields

    def _fast_refresh(self, now: float) -> None:
        """Before a sweep: entries whose frames all took the fast path were used there;
        the times the programs wrote keep them from expiring."""
        fp = self.fast
        if fp is None:
            return
        fp.write_config(now)
        varp, vifs = self.tables.varp.entries, self.tables.vifs.entries
        for key in list(fp.remotes):
            e = varp.get(key)
            if e is not None and now - e.updated > SWEEP_INTERVAL:
                t = fp.last_used(key[0], key[1], remote=True)
                if t is not None and t > e.updated:
                    e.updated = t
        for key in list(fp.locals):
            seen = vifs.get(key)
            if seen is not None and now - seen > SWEEP_INTERVAL:
                t = fp.last_used(key[0], key[1], remote=False)
                if t is not None and t > seen:
                    vifs[key] = t

    def restore(self, state: State, where: Path) -> None:
        """Bring back the persisted vnets and peers; one bad entry does not stop the rest
        (the group was joined at start)."""
        _, _, failed = restore(self, state, group=False)
        for message in failed:
            log.error("%s", message)
        log.info("restored %d vnets and %d peers from %s", len(self.tables.vnets),
                 len(self.tables.peers), where)

    # ---- socket handlers: read a batch, hand each packet to its rule -----------------

    def _udp_readable(self) -> None:
        mv, from_udp = self.mv, self.rx.from_udp
        receive = functools.partial(self.sockets.udp.recvfrom_into, self.buf)
        for n, (src, _sport) in drain(receive, self.clock, self.tables.drops, D_RECV_ERROR):
            from_udp(mv[:n], src)

    def _group_readable(self, sock: socket.socket, group_b: bytes | None = None) -> None:
        mv, from_udp = self.mv, self.rx.from_udp
        receive = functools.partial(sock.recvmsg_into, [self.buf], socket.CMSG_SPACE(4))
        for n, anc, _flags, (src, _sport) in drain(receive, self.clock, self.tables.drops, D_RECV_ERROR):
            from_udp(mv[:n], src, anc[0][2][0] if anc else wire.DEFAULT_TTL, group_b)

    def _raw_readable(self) -> None:
        mv, from_raw = self.mv, self.rx.from_raw
        receive = functools.partial(self.sockets.etherip.recvfrom_into, self.buf)
        for n, (src, _) in drain(receive, self.clock, self.tables.drops, D_RECV_ERROR):
            from_raw(mv[:n], src)

    def _tap_readable(self, v: Vnet) -> None:
        drops = self.tables.drops
        errors = drops[D_TAP_READ_ERROR]
        self.tx.from_tap(v, v.tap.frames(self.clock, drops))
        if drops[D_TAP_READ_ERROR] != errors:
            self._check_tap(v)

    def _port_readable(self, v: Vnet, p: Port, frames) -> None:
        link = p.link
        if link is not None and link.suspended:  # read and dropped before switching
            drops = self.tables.drops
            n = sum(1 for _ in frames(self.clock, drops))
            drops[D_LINK_SUSPENDED] += n
        else:
            self.tx.from_tap(v, frames(self.clock, self.tables.drops), p)
        if p.gone:  # its interface was deleted: wait for one of that name
            self._reconcile_ports()

    def _check_tap(self, v: Vnet) -> None:
        """After a read error: a tap whose device was deleted (`ip link del vnif97`)
        fails every read with EBADFD and stays readable for epoll, so the vnet stops
        running here, as the module's does; the state keeps it and `vn vnets` says so.
        A read of 0 bytes takes no frame: it only says whether the tap is detached."""
        try:
            os.read(v.fd, 0)
        except OSError as e:
            if e.errno == errno.EBADFD and self.tables.vnets.get(v.vid) is v:
                del self.tables.vnets[v.vid]
                self._close_vnet(v)
                self._sync_groups()
                log.warning("vnet %s stopped: its device %s was deleted", v.cfg.id, v.cfg.vnetif)

    def _watch_group(self) -> None:
        sock = self.sockets.group
        self.loop.watch(sock.fileno(), lambda: self._group_readable(sock))

    def _sync_groups(self, adding: VnetConfig | None = None) -> None:
        """Receive exactly the groups of the vnets that have their own (and `adding`,
        the vnet about to be made), besides the shared one: a socket per group, opened
        with the first vnet that names it and closed with the last."""
        wanted = {v.cfg.group for v in self.tables.vnets.values() if v.cfg.group}
        if adding is not None and adding.group:
            wanted.add(adding.group)
        wanted.discard(self.here.mcaddr)
        have = self.sockets.vnet_groups
        for addr in [a for a in have if a not in wanted]:
            sock = have.pop(addr)
            self.loop.unwatch(sock.fileno())
            sock.close()
        for addr in sorted(wanted - have.keys()):
            sock = have[addr] = self.sockets.group_socket(addr)
            group_b = socket.inet_aton(addr)
            self.loop.watch(sock.fileno(), lambda s=sock, g=group_b: self._group_readable(s, g))
        self.here.set_vnet_groups(have)

    # ---- ports: attached while their interface exists --------------------------------

    def _links_changed(self) -> None:
        self.links.drain()
        self._reconcile_ports()
        if self.fast is not None:
            self.fast.recheck_underlay(time.monotonic())

    def _sweep(self, now: float) -> None:
        self._fast_refresh(now)
        self.tables.sweep(now)
        vifs = self.tables.vifs.entries
        for v in self.tables.vnets.values():  # local MACs expire with their vif entry
            for mac in [m for m in v.macs if (v.vid, m) not in vifs]:
                del v.macs[mac]
        self._reconcile_ports()  # in case a link message was lost

    def _reconcile_ports(self) -> None:
        """Compare every port with the links there are: detach a port whose interface
        went (or is another one now), attach a waiting one whose name appeared."""
        if not any(v.ports for v in self.tables.vnets.values()):
            return
        links = netdev.link_names(self.ipr)
        for v in list(self.tables.vnets.values()):
            for name, p in list(v.ports.items()):
                index = links.get(name)
                if p is not None and (p.gone or index != p.ifindex):
                    self._detach(v, name)
                    log.warning("vnet %s: port %s waits: its interface is gone", v.cfg.id, name)
                    p = None
                if p is None and index is not None:
                    try:
                        self._attach(v, name, index)
                    except DatapathError as e:
                        if self.port_trouble.get(name) != e.message:
                            log.warning("vnet %s: port %s waits: %s", v.cfg.id, name, e.message)
                            self.port_trouble[name] = e.message
                        continue
                    self.port_trouble.pop(name, None)
                    log.warning("vnet %s: port %s attached (ifindex %d)", v.cfg.id, name, index)

    def _attach(self, v: Vnet, name: str, index: int) -> None:
        """Make the existing interface `name` a port of v, or raise DatapathError and
        leave it as it was (the port stays waiting)."""
        netdev.check_port(self.ipr, name, index)
        netdev.prepare_port(self.ipr, name, index, v.mtu)
        # GSO packets need UDP and offload to cross whole, else they are cut at once;
        # a secure vnet seals them whole only up to the cap a tap has.
        cap = 0 if not (self.offload and v.udp) else netdev.SUPER_FRAME_MAX if v.level else None
        try:
            p = Port(name, index, cap)
        except OSError as e:
            raise DatapathError.from_os_error(e, f"port {name}: cannot open a packet socket on it") from None
        self._set_link(p, v.cfg.link(name))
        v.ports[name] = p
        self._set_attachments(v)
        self.loop.watch(p.fd, lambda: self._port_readable(v, p, p.frames))
        self.loop.watch(p.tagged.fileno(), lambda: self._port_readable(v, p, p.tagged_frames))

    def _detach(self, v: Vnet, name: str) -> None:
        """Close the port's socket (which releases its promiscuity); it waits now."""
        p = v.ports.get(name)
        if p is None:
            return
        self.loop.unwatch(p.fd)
        self.loop.unwatch(p.tagged.fileno())
        if p.link is not None:
            p.link.close()
            p.link = None
        p.close()
        v.ports[name] = None
        self._set_attachments(v)

    def _check_names(self, vid: VnetId, name: str, kind: str) -> None:
        """Refuse `name` as a `kind` if a vnet here uses it as a device, bridge or port."""
        for other in self.tables.vnets.values():
            c = other.cfg
            if name in other.ports:
                if other.vid == vid.packed:
                    raise DatapathError("EEXIST", f"port {name} is already in vnet {c.id}")
                raise DatapathError("EEXIST", f"{kind} {name} is already a port of vnet {c.id}")
            for what, used in (("vnetif", c.vnetif), ("bridge", c.bridge)):
                if name == used:  # two vnets on one bridge would merge their LANs
                    how = "" if what == kind else f" (as its {what})"
                    raise DatapathError("EEXIST", f"{kind} {name} is already used by vnet {c.id}{how}")

    def _add_port(self, v: Vnet, name: str, links: dict[str, int]) -> None:
        """A port of v: attached now if its interface exists (or an error), else waiting."""
        index = links.get(name)
        if index is None:
            v.ports[name] = None
            log.info("vnet %s: port %s waits for its interface", v.cfg.id, name)
        else:
            self._attach(v, name, index)
            log.info("vnet %s: port %s attached (ifindex %d)", v.cfg.id, name, index)

    # ---- endpoints: QEMU socket NICs (doc/endpoints.md) -------------------------------

    def _check_endpoint(self, vid: VnetId, spec: EndpointSpec) -> None:
        """Refuse an endpoint a vnet here has, or whose socket one of them binds."""
        for other in self.tables.vnets.values():
            for held in other.endpoints:
                if held == spec:
                    raise DatapathError("EEXIST", f"endpoint ({spec}) is already in vnet {other.cfg.id}")
                if held.clashes(spec):
                    raise DatapathError("EADDRINUSE", f"endpoint ({spec}): vnet {other.cfg.id}'s endpoint "
                                        f"({held}) binds the same {spec.protocol} port")

    def _open_endpoint(self, v: Vnet, spec: EndpointSpec) -> None:
        """Open the endpoint and make it one of v's attachments, or raise DatapathError
        (an address in use, ...) with nothing left open."""
        att = EndpointAttachment(spec)
        clock, from_tap, framed = self.clock, self.tx.from_tap, att.framed

        def receive(_ep, frames) -> None:
            clock.tick()
            from_tap(v, framed(frames), att)

        att.open(self.loop, receive)
        v.endpoints[spec] = att
        self._set_attachments(v)

    def _close_endpoint(self, v: Vnet, spec: EndpointSpec) -> None:
        att = v.endpoints.pop(spec, None)
        if att is not None:
            att.close()
            self._set_attachments(v)

    def endpoint_add(self, vid: VnetId, spec: EndpointSpec) -> None:
        v = self._need_vnet(vid)
        self._check_endpoint(vid, spec)
        self._open_endpoint(v, spec)
        v.cfg = v.cfg.with_endpoints(v.cfg.endpoints + (spec,))
        log.info("vnet %s: endpoint %s opened", vid, spec)

    def endpoint_del(self, vid: VnetId, spec: EndpointSpec) -> None:
        v = self._need_vnet(vid)
        if spec not in v.endpoints:
            have = ", ".join(f"({e})" for e in v.endpoints) or "none"
            raise DatapathError("ENOENT", f"vnet {vid} has no endpoint ({spec}) (its endpoints: {have})")
        self._close_endpoint(v, spec)
        v.cfg = v.cfg.with_endpoints(tuple(e for e in v.cfg.endpoints if e != spec))
        log.info("vnet %s: endpoint %s closed", vid, spec)

    def endpoints(self) -> list[Record]:
        out = []
        for v in sorted(self.tables.vnets.values(), key=lambda v: v.cfg.id):
            for spec, att in v.endpoints.items():
                ep = att.ep
                local = f"{spec.local[0]}:{spec.local[1]}" if spec.local else "-"
                remote = f"{spec.remote[0]}:{spec.remote[1]}" if spec.remote else "-"
                c = ep.counters()
                out.append(records.endpoint_record(v.cfg.id, spec.kind, local, remote, ep.state,
                                                   c["rx_packets"], c["tx_packets"], c["rx_bytes"],
                                                   c["tx_bytes"], records.endpoint_drops(c)))
        return out

    # ---- Datapath interface -----------------------------------------------------------

    def vnet_add(self, cfg: VnetConfig) -> None:
        held = keys.for_vnet(cfg.id, cfg.security, cfg.key_files)
        by_id = self.tables.vnets
        if cfg.id.packed in by_id:
            raise DatapathError("EEXIST", f"vnet {cfg.id} already exists")
        self._check_names(cfg.id, cfg.vnetif, "vnetif")
        if cfg.bridge is not None:
            self._check_names(cfg.id, cfg.bridge, "bridge")
        for name in cfg.ports:
            self._check_names(cfg.id, name, "port")
        for spec in cfg.endpoints:
            self._check_endpoint(cfg.id, spec)
        if netdev.link_index(self.ipr, cfg.vnetif) is not None:
            raise DatapathError("EEXIST", f"a device named {cfg.vnetif} already exists on this host")
        links = netdev.link_names(self.ipr)
        for name in cfg.ports:  # every existing one checked before anything is made
            if name in links:
                netdev.check_port(self.ipr, name, links[name])
        self._sync_groups(cfg)  # joined before the vnet floods; left again if it is not made
        try:
            self._make_vnet(cfg, held, links)
        finally:
            self._sync_groups()

    def _make_vnet(self, cfg: VnetConfig, held: list[keys.Key], links: dict) -> None:
        """The vnet's tap, bridge, ports and endpoints, all or none."""
        # Super-frames need UDP: raw EtherIP sets DF and cannot carry 58 KB packets.
        offload = self.offload and cfg.encapsulation == "udp"
        fd = netdev.open_tap(cfg.vnetif, offload)
        created = False
        try:
            netdev.isolate_port(cfg.vnetif)
            if offload:
                netdev.limit_gso(self.ipr, cfg.vnetif)
            if cfg.bridge is None:  # alone, up, isolated like a port
                netdev.prepare_port(self.ipr, cfg.vnetif, netdev.link_index(self.ipr, cfg.vnetif), cfg.mtu)
            else:
                created = netdev.ensure_bridge(self.ipr, cfg.bridge)
                netdev.enslave(self.ipr, cfg.vnetif, cfg.bridge, mtu=cfg.mtu)
                if cfg.mtu != cfg.default_mtu:
                    netdev.set_mtu(self.ipr, cfg.bridge, cfg.mtu)
        except DatapathError:
            os.close(fd)
            if created:
                netdev.delete_link(self.ipr, cfg.bridge)
            raise
        v = Vnet(cfg, fd, created, held)
        try:
            for name in cfg.ports:
                self._add_port(v, name, links)
            for spec in cfg.endpoints:
                self._open_endpoint(v, spec)
        except DatapathError:
            for name in list(v.ports):
                self._detach(v, name)
            for spec in list(v.endpoints):
                self._close_endpoint(v, spec)
            os.close(fd)
            if created:
                netdev.delete_link(self.ipr, cfg.bridge)
            raise
        self.tables.vnets[v.vid] = v
        self.loop.watch(fd, lambda: self._tap_readable(v))
        self._fast_sync(v)
        log.info("vnet %s up: %s on bridge %s (%s, security %s, mtu %d, ports %s, endpoints %s)", cfg.id,
                 cfg.vnetif, cfg.bridge or "none", cfg.encapsulation, cfg.security, cfg.mtu,
                 " ".join(cfg.ports) or "none", ", ".join(map(str, cfg.endpoints)) or "none")

    def port_add(self, vid: VnetId, ifname: str) -> None:
        v = self._need_vnet(vid)
        self._check_names(vid, ifname, "port")
        self._add_port(v, ifname, netdev.link_names(self.ipr))
        v.cfg = v.cfg.with_ports(v.cfg.ports + (ifname,))

    def port_del(self, vid: VnetId, ifname: str) -> None:
        v = self._need_vnet(vid)
        if ifname not in v.ports:
            raise DatapathError("ENOENT", f"vnet {vid} has no port {ifname} "
                                f"(its ports: {', '.join(v.ports) or 'none'})")
        self._detach(v, ifname)
        del v.ports[ifname]
        self.port_trouble.pop(ifname, None)
        v.cfg = v.cfg.with_ports(tuple(p for p in v.cfg.ports if p != ifname))
        log.info("vnet %s: port %s removed", vid, ifname)

    def port_set(self, vid: VnetId, ifname: str, link: LinkControl) -> None:
        v = self._need_vnet(vid)
        if ifname not in v.ports:
            raise DatapathError("ENOENT", f"vnet {vid} has no port {ifname} "
                                f"(its ports: {', '.join(v.ports) or 'none'})")
        v.cfg = v.cfg.with_link(ifname, link)
        p = v.ports[ifname]
        if p is not None:
            self._set_link(p, link)
        log.info("vnet %s: port %s link control %s", vid, ifname, link)

    def _set_link(self, p: Port, link: LinkControl) -> None:
        """Give an attached port its link control: a PortLink while it has one (kept
        while frames wait in it, which then leave as scheduled), none otherwise."""
        if p.link is not None:
            p.link.set(link)
            if not link.active and not p.link.busy:
                p.link = None
        elif link.active:
            p.link = PortLink(p, link, self.clock, self.loop.call_at, self.tables.drops)

    def ports(self) -> list[Record]:
        out = []
        for v in sorted(self.tables.vnets.values(), key=lambda v: v.cfg.id):
            for name, p in v.ports.items():
                link = v.cfg.link(name).to_sxp()
                if p is None:
                    out.append(records.port_record(v.cfg.id, name, "waiting", 0, 0, 0, 0, 0, link))
                else:
                    out.append(records.port_record(v.cfg.id, name, "attached", p.ifindex, p.rx_packets,
                                                   p.tx_packets, p.rx_bytes, p.tx_bytes, link))
        return out

    def vnet_keys(self, vid: VnetId, key_files: tuple[str, ...]) -> None:
        v = self._need_vnet(vid)
        if not v.level:
            raise DatapathError("EINVAL", f"vnet {vid} has (security none) and uses no keys")
        try:
            cfg = v.cfg.with_keys(key_files)
        except ConfigError as e:
            raise DatapathError("EINVAL", f"vnet.keys: {e}") from None
        v.set_keys(keys.for_vnet(cfg.id, cfg.security, key_files))
        v.cfg = cfg
        log.info("vnet %s: keys %s, sending with key %d", vid, " ".join(map(str, v.secrets)), v.send_id)

    def vnet_del(self, vid: VnetId) -> None:
        v = self.tables.vnets.pop(vid.packed, None)
        if v is None:
            raise DatapathError("ENOENT", f"vnet {vid} does not exist")
        self._close_vnet(v)
        self._sync_groups()
        log.info("vnet %s removed", vid)

    def _close_vnet(self, v: Vnet) -> None:
        if self.fast is not None:
            self.fast.forget(v.vid)
        for name in list(v.ports):
            self._detach(v, name)
        for spec in list(v.endpoints):
            self._close_endpoint(v, spec)
        self.loop.unwatch(v.fd)
        os.close(v.fd)
        self.tables.varp.flush(v.vid)
        self.tables.vifs.flush(v.vid)

    def vnets(self) -> list[Record]:
        out = []
        for v in sorted(self.tables.vnets.values(), key=lambda v: v.cfg.id):
            c = v.cfg
            extra = {"keys": [v.send_id] + [k for k in v.secrets if k != v.send_id]} if v.level else {}
            path, fast = self._fast_path(v)
            # The totals count both paths; fast_* what the fast path carried of them.
            out.append(records.vnet_record(
                c.id, c.vnetif, c.security, c.header, bridge=c.bridge or "none",
                encapsulation=c.encapsulation, rx_packets=v.rx_packets + fast.get("fast_rx_packets", 0),
                tx_packets=v.tx_packets + fast.get("fast_tx_packets", 0),
                rx_bytes=v.rx_bytes + fast.get("fast_rx_bytes", 0),
                tx_bytes=v.tx_bytes + fast.get("fast_tx_bytes", 0), **extra, **group_field(c.group),
                path=path, **fast))
        return out

    def _need_vnet(self, vid: VnetId) -> Vnet:
        v = self.tables.vnets.get(vid.packed)
        if v is None:
            raise DatapathError("ENOENT", f"vnet {vid} does not exist")
        return v

    def vif_add(self, vid: VnetId, mac: bytes) -> None:
        v = self._need_vnet(vid)
        try:
            new = self.tables.vifs.touch(vid.packed, mac, time.monotonic(), not v.level)
        except DatapathError as e:  # no room: worded as the module's VIF_ADD says it
            raise DatapathError(e.code, f"cannot add vif {format_mac(mac)} to vnet {vid}: {e.message}") from None
        if new:
            self.tables.mac_changed(vid.packed, mac, self.tables.varp.forget(vid.packed, mac), LOCAL)

    def _monitor(self, command: sxp.Value, stream: Stream) -> None:
        """`vn monitor`: each MAC change, as the JSON of an events.MacChange, for as
        long as the client reads (vnet.control.events makes the events of them)."""
        if len(command) != 1:
            raise DatapathError("EINVAL", "monitor takes no arguments")

        def changed(vnet: bytes, mac: bytes, old: str | None, new: str | None) -> None:
            change = MacChange(str(VnetId.from_bytes(vnet)), format_mac(mac), old, new)
            stream.send(json.dumps(change.to_json()).encode())

        stream.on_close.append(self.tables.watch_macs(changed))

    def vif_del(self, vid: VnetId, mac: bytes) -> None:
        self._need_vnet(vid)
        if not self.tables.vifs.remove(vid.packed, mac):
            raise DatapathError("ENOENT", f"no vif {mac.hex(':')} on vnet {vid}")

    def vifs(self) -> list[Record]:
        now = time.monotonic()
        vifs = self.tables.vifs
        out = [records.viftable_record(int(vifs.ttl), vifs.sweeps)]
        for (vid, mac), seen in sorted(vifs.entries.items()):
            out.append(records.vif_record(vid, mac, now - seen))
        return out

    def peer_add(self, addr: str, port: int) -> None:
        # vn checked already; this is for peer.add on the socket and the state file.
        check_peer(addr, netdev.local_routes(self.ipr))
        check_peer_room(addr, self.tables.peers)
        peer = self.tables.peers.get(addr)
        if peer is None:
            self.tables.peers[addr] = Peer(addr, port)
        else:
            peer.port = port

    def peer_del(self, addr: str) -> None:
        if self.tables.peers.pop(addr, None) is None:
            raise DatapathError("ENOENT", f"{addr} is not a peer")

    def peers(self) -> list[Record]:
        return [records.peer_record(p.addr, p.port, p.tx_packets, p.rx_packets)
                for p in sorted(self.tables.peers.values(), key=lambda p: socket.inet_aton(p.addr))]

    def varp_flush(self) -> None:
        self.tables.varp.flush()

    def varp(self) -> list[Record]:
        now = time.monotonic()
        here, cache = self.here, self.tables.varp
        out = [records.varp_record(here.device, here.mcaddr, here.address, here.port,
                                   "etherip_in_udp", int(cache.ttl))]
        for (vid, mac), e in sorted(cache.entries.items()):
            out.append(records.ventry_record(vid, mac, e.addr, now - e.updated))
        return out

    def set_mcaddr(self, addr: str) -> None:
        self.here.set_group(addr)
        self.loop.unwatch(self.sockets.group.fileno())
        self.sockets.join_group()
        self._watch_group()
        self._sync_groups()  # a vnet's own group may be the shared one now, or no longer

    def stats(self) -> list[Record]:
        return [records.counters_record("counters", stats.named(stats.COUNTERS, self.tables.counts)),
                records.counters_record("drops", stats.named(stats.DROPS, self.tables.drops))]

    # ---- the daemon's life ------------------------------------------------------------

    def listen(self, path: Path) -> None:
        self.server.listen(path)

    def serve_metrics(self, address: str) -> None:
        """Serve the Prometheus page at http://ADDRESS/metrics (doc/metrics.md)."""
        self.metrics.listen(address)

    def run(self) -> None:
        self.loop.run()

    def stop(self, *_args) -> None:
        self.loop.stop()

    def shutdown(self) -> None:
        """Remove what we made: taps, bridges we created that nothing else uses, the socket."""
        for v in list(self.tables.vnets.values()):
            self._close_vnet(v)
            if v.bridge_created and v.cfg.bridge is not None:
                ports = netdev.bridge_ports(self.ipr, v.cfg.bridge)
                if not ports:
                    netdev.delete_link(self.ipr, v.cfg.bridge)
                else:
                    log.info("leaving bridge %s: still has ports %s", v.cfg.bridge, ", ".join(ports))
        self.tables.vnets.clear()
        if self.fast is not None:
            self.fast.close()
            self.fast = None
        self.server.close()
        self.metrics.close()
        self.links.close()
        self.sockets.close()
        self.loop.close()
        self.ipr.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", envvar="VNET_STATE_DIR", type=click.Path(file_okay=False),
              help="State directory to restore vnets and peers from [default: /var/lib/vnet].")
@click.option("--socket", "socket_opt", help="Control socket [default: STATE_DIR/vnetd.sock].")
@click.option("-a", "--address", help="Underlay IPv4 address [default: that of the default route's interface, "
                   "else the host's only one].")
@click.option("-i", "--interface", help="Underlay interface to take the address from.")
@click.option("-m", "--varp-mcaddr", "mcaddr", help="Multicast group [default: 224.10.0.1, or the persisted one].")
@click.option("--ttl", type=click.IntRange(1, 255), default=wire.DEFAULT_TTL, show_default=True,
              help="TTL of multicast packets.")
@click.option("--no-restore", is_flag=True, help="Do not restore vnets and peers from the state directory.")
@click.option("--offload/--no-offload", default=True, show_default=True,
              help="Move TCP super-frames (longer than 1514 bytes) in one datagram to the vnet "
                   "hosts known to take them (learned on the wire; others get ordinary frames); "
                   "off: send and ask for ordinary frames only.")
@click.option("--fastpath/--no-fastpath", "fast", default=True, show_default=True,
              help="Carry the unicast frames of plain UDP vnets between known MACs in the kernel, "
                   "with tc/eBPF programs (doc/fastpath.md); where the kernel refuses them, vnetd "
                   "says so once and carries every frame itself.")
@click.option("--metrics", "metrics_addr", metavar="ADDR:PORT",
              help="Serve the counters and table sizes to Prometheus at http://ADDR:PORT/metrics "
                   "(doc/metrics.md) [default: not served].")
@click.option("-V", "--verbose", is_flag=True, help="Log control operations.")
@click.version_option(__version__, "-v", "--version", prog_name="vnetd")
def cli(state_dir, socket_opt, address, interface, mcaddr, ttl, no_restore, offload, fast, metrics_addr,
        verbose) -> None:
    """The user-space vnet datapath: tap devices, EtherIP-in-UDP on port 1798, VARP, peers."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="vnetd: %(message)s", stream=sys.stderr)
    sdir = resolve_state_dir(state_dir)
    store = StateStore(sdir)
    try:
        # Taps, bridges and raw sockets: one line now rather than a traceback later.
        privilege.require("vnetd", privilege.CAP_NET_ADMIN, privilege.CAP_NET_RAW)
        state = None if no_restore else store.load()
        if mcaddr is not None:  # the command line wins over the persisted group
            mcaddr = parse_ipv4(mcaddr)
        elif state is not None:
            mcaddr = state.settings.get("mcaddr")
        with IPRoute() as ipr:
            address = parse_ipv4(address) if address else pick_address(ipr, interface)
        daemon = Vnetd(address, mcaddr or wire.DEFAULT_GROUP, ttl=ttl, offload=offload, fast=fast,
                       fast_refused=os.environ.get(FAST_REFUSED_ENV) or None)
    except VnetError as e:
        raise click.ClickException(str(e))
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    try:
        daemon.listen(resolve_socket(socket_opt, sdir))
        if metrics_addr is not None:
            daemon.serve_metrics(metrics_addr)
            log.warning("metrics at http://%s/metrics", daemon.metrics.address)
        if state is not None:
            daemon.restore(state, sdir)
        notify(READY=1, STATUS=f"{len(daemon.tables.vnets)} vnets, {len(daemon.tables.peers)} peers; "
               f"serving on {daemon.server.path}")
        log.warning("serving on %s, underlay %s (%s), group %s", daemon.server.path, daemon.here.address,
                    daemon.here.device, daemon.here.mcaddr)
        daemon.run()
        notify(STOPPING=1)
    except VnetError as e:
        raise click.ClickException(str(e))
    finally:
        daemon.shutdown()


def main() -> None:
    cli(prog_name="vnetd")


if __name__ == "__main__":
    main()
