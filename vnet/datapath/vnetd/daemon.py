"""vnetd: the user-space vnet datapath and control daemon.

One tap device per vnet, enslaved to the vnet's bridge; frames read from it are
encapsulated (EtherIP-in-UDP on port 1798, or raw EtherIP) and sent to the host
holding the destination MAC, or flooded to the multicast group and forwarded to
peers.  Received frames are checked, learned from and written to the vnet's tap.

The loop is single-threaded over epoll; every handler drains its descriptor in a
batch and reads the clock once per batch.  The per-packet code uses prebuilt
headers, bytes slicing and dict lookups only: no construct, no logging, no copies
beyond the kernel's.  State that must survive a restart (vnets, peers, group) is
read from the state directory at start; `vn` writes it.
"""
from __future__ import annotations

import functools
import logging
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import click
from pyroute2 import IPRoute

import sxp
from vnet import __version__
from vnet.control import language, records
from vnet.control.datapath import Datapath, Record
from vnet.control.protocol import (
    MAX_REQUEST,
    encode_replies,
    error_reply,
    ok_reply,
    resolve_socket,
)
from vnet.control.restore import restore
from vnet.datapath.vnetd.offload import (
    PLAIN_FRAME_MAX,
    VNET_HDR_LEN,
    ZERO_HDR,
    finish_checksum,
    gso_header,
)
from vnet.datapath.vnetd.tables import (
    SWEEP_INTERVAL,
    FloodFilter,
    Peer,
    VarpCache,
    VifTable,
)
from vnet.errors import DatapathError
from vnet.host import netdev
from vnet.host.netdev import pick_address
from vnet.model import keys
from vnet.model.addr import is_host_ipv4, is_multicast_ipv4, parse_ipv4
from vnet.model.config import ConfigError, VnetConfig
from vnet.model.state import State, StateError, StateStore, resolve_state_dir
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire
from vnet.wire import seal, stats
from vnet.wire.stats import (
    C_ANNOUNCES_RECEIVED,
    C_ANNOUNCES_SENT,
    C_ETHERIP_RECEIVED,
    C_FLOODS,
    C_FORWARDS_RECEIVED,
    C_UDP_RECEIVED,
    C_UNKNOWN_UNICAST_FLOODS,
    C_VARP_REQUESTS,
    D_BAD_FAMILY,
    D_BAD_FORWARD,
    D_BAD_MESSAGE_ID,
    D_BAD_OPCODE,
    D_BAD_SEAL,
    D_BAD_SOURCE_MAC,
    D_BAD_TAG,
    D_BAD_VERSION,
    D_DUPLICATE,
    D_HOP_LIMIT,
    D_NOT_A_PEER,
    D_OTHER_GROUP,
    D_OWN_PACKET,
    D_RECV_ERROR,
    D_REPLAY,
    D_SECURITY_MISMATCH,
    D_SEND_ERROR,
    D_SHORT,
    D_TAP_READ_ERROR,
    D_TAP_RUNT,
    D_TAP_WRITE_ERROR,
    D_UNKNOWN_KEY,
    D_UNKNOWN_VNET,
    D_UNPROTECTED,
)

log = logging.getLogger("vnetd")

IP_MULTICAST_ALL = 49
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT, IP_PMTUDISC_DO = 0, 2
IP_RECVTTL = 12
SO_NO_CHECK = 11
#: Abstract Unix socket names are per network namespace: holding this one means
#: "the vnet datapath of this namespace", since port 1798 can be bound twice.
NETNS_LOCK = b"\0vnet-datapath"
BATCH = 64
RCVBUF = 4 << 20
#: Replay windows a secure vnet keeps (one per sending host).  Only a key holder can
#: add one, so this bounds memory against a misbehaving member, not the public.
MAX_SENDERS = 1024
ZERO_ADDR = b"\0\0\0\0"


def check_group(addr: str) -> None:
    """The one check of a group address, for -m, the persisted setting and varp.mcaddr."""
    if not is_multicast_ipv4(addr):
        raise DatapathError("EINVAL", f"{addr} is not a multicast address (224.0.0.0/4)")


class Vnet:
    """A vnet on this host: its config, tap, header prefix, keys and counters.

    `level` is 0 for (security none); a secure vnet also has its ciphers by key id,
    the send key's id and cipher, and a replay window per sender (doc/security.md)."""

    __slots__ = ("cfg", "vid", "fd", "prefix", "udp", "bridge_created", "mtu", "level",
                 "ciphers", "send_id", "send_cipher", "windows",
                 "rx_packets", "tx_packets", "rx_bytes", "tx_bytes")

    def __init__(self, cfg: VnetConfig, fd: int, bridge_created: bool, held: list[keys.Key]) -> None:
        self.cfg = cfg
        self.mtu = cfg.mtu
        self.vid = cfg.id.packed
        self.fd = fd
        self.udp = cfg.encapsulation == "udp"
        self.prefix = wire.vudp_prefix(self.vid) if self.udp else wire.etherip_prefix(self.vid)
        self.bridge_created = bridge_created
        self.level = seal.LEVELS[cfg.security]
        self.windows: dict[bytes, seal.ReplayWindow] = {}
        self.set_keys(held)
        self.rx_packets = self.tx_packets = self.rx_bytes = self.tx_bytes = 0

    def set_keys(self, held: list[keys.Key]) -> None:
        self.ciphers = {k.id: seal.aead(k.secret) for k in held}
        self.send_id = held[0].id if held else 0
        self.send_cipher = self.ciphers.get(self.send_id)


class Vnetd(Datapath):
    """The daemon; also the in-process Datapath that the command language drives."""

    kind = "vnetd"

    def __init__(self, address: str, mcaddr: str = wire.DEFAULT_GROUP, port: int = wire.PORT,
                 ttl: int = wire.DEFAULT_TTL, offload: bool = True) -> None:
        self.ipr = IPRoute()
        self.offload = offload
        self.port = port
        self.ttl = ttl
        self.socket_path: Path | None = None
        self.by_id: dict[bytes, Vnet] = {}
        self.varp_cache = VarpCache()
        self.vif_table = VifTable()
        self.peer_table: dict[str, Peer] = {}
        self.flood_filter = FloodFilter()
        self.drops = [0] * len(stats.DROPS)
        self.counts = [0] * len(stats.COUNTERS)
        self.now = time.monotonic()
        self.seq = seal.new_sequence()
        self.running = True
        self.buf = bytearray(65536)
        self.mv = memoryview(self.buf)
        self.ep = select.epoll()
        self.handlers: dict[int, object] = {}
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}
        self._set_address(address)
        check_group(mcaddr)
        self.mcaddr = mcaddr
        self.mcaddr_b = socket.inet_aton(mcaddr)
        self._open_sockets()

    # ---- setup -------------------------------------------------------------------

    def _set_address(self, address: str) -> None:
        found = {a: (ifname, index, plen) for ifname, a, index, plen in netdev.ipv4_addresses(self.ipr)}
        if address not in found:
            raise DatapathError("EADDRNOTAVAIL", f"{address} is not an address of this host "
                                f"(have: {', '.join(sorted(found)) or 'none'})")
        self.address = address
        self.address_b = socket.inet_aton(address)
        self.device, self.ifindex, prefix = found[address]
        self.self_addrs = set(found) | {"0.0.0.0"}
        self.onlink_mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
        self.onlink_net = int.from_bytes(self.address_b, "big") & self.onlink_mask

    def _relayed(self, src: str) -> bool:
        """A multicast from an off-link source can only be a peer's re-send."""
        return int.from_bytes(socket.inet_aton(src), "big") & self.onlink_mask != self.onlink_net

    def _duplicate(self, src: str, payload) -> bool:
        if self._relayed(src):
            return not self.flood_filter.first_time(src, payload, self.now)
        self.flood_filter.record(src, payload, self.now)
        return False

    def _mc_options(self, s: socket.socket) -> None:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, self.address_b)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)

    def _membership(self) -> bytes:
        return struct.pack("4s4si", self.mcaddr_b, self.address_b, self.ifindex)

    def _open_sockets(self) -> None:
        self.lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.lock.bind(NETNS_LOCK)
        except OSError:
            self.lock.close()
            raise DatapathError("EADDRINUSE", "another vnet datapath (vnetd) is already running "
                                "in this network namespace") from None
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        u.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        self._mc_options(u)
        self._bigbuf(u)
        # As the original: UDP checksum 0 (the inner frame has its own) and DF clear,
        # so full-size frames are fragmented by the host rather than dropped.
        u.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        u.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        try:
            u.bind(("0.0.0.0", self.port))
        except OSError as e:
            u.close()
            raise DatapathError.from_os_error(e, f"cannot bind UDP port {self.port} "
                                              "(is another vnetd or the vnet module running here?)")
        self.usock = u
        self.r97 = socket.socket(socket.AF_INET, socket.SOCK_RAW, wire.IPPROTO_ETHERIP)
        self._mc_options(self.r97)
        self._bigbuf(self.r97)
        self.r97.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        self.rawout = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._mc_options(self.rawout)
        for s in (u, self.r97, self.rawout):
            s.setblocking(False)
        self.msock: socket.socket | None = None
        self._open_group()
        self._watch(u.fileno(), self._udp_readable)
        self._watch(self.r97.fileno(), self._raw_readable)

    def _bigbuf(self, s: socket.socket) -> None:
        for opt in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE as root, else the capped one
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
                return
            except OSError:
                continue

    def _open_group(self) -> None:
        """(Re)open the socket that receives the group's floods and VARP messages."""
        if self.msock is not None:
            self._unwatch(self.msock.fileno())
            try:
                self.r97.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, self._old_membership)
            except OSError:
                pass
            self.msock.close()
        m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        m.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        m.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        m.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        self._bigbuf(m)
        m.bind((self.mcaddr, self.port))
        m.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, self._membership())
        m.setblocking(False)
        self.r97.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, self._membership())
        self._old_membership = self._membership()
        self.msock = m
        self._watch(m.fileno(), lambda: self._group_readable(m))

    def _watch(self, fd: int, handler) -> None:
        self.handlers[fd] = handler
        self.ep.register(fd, select.EPOLLIN)

    def _unwatch(self, fd: int) -> None:
        self.handlers.pop(fd, None)
        try:
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass

    def restore(self, state: State, where: Path) -> None:
        """Bring back the persisted vnets and peers; one bad entry does not stop the rest
        (the group was joined at start)."""
        _, _, failed = restore(self, state, group=False)
        for message in failed:
            log.error("%s", message)
        log.info("restored %d vnets and %d peers from %s", len(self.by_id), len(self.peer_table), where)

    # ---- control socket -------------------------------------------------------------

    def listen(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()
            else:
                raise DatapathError("EADDRINUSE", f"another vnetd is serving {path}")
            finally:
                probe.close()
        old = os.umask(0o077)
        try:
            ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            ls.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        ls.listen(16)
        ls.setblocking(False)
        self.lsock = ls
        self.socket_path = path
        self._watch(ls.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.lsock.accept()
            except BlockingIOError:
                return
            uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
            if uid != 0:
                conn.sendall(encode_replies([error_reply(DatapathError("EPERM", "vnetd accepts commands from root only"))]))
                conn.close()
                continue
            conn.setblocking(False)
            self.conns[conn.fileno()] = (conn, bytearray())
            self._watch(conn.fileno(), lambda fd=conn.fileno(): self._conn_readable(fd))

    def _conn_readable(self, fd: int) -> None:
        conn, data = self.conns[fd]
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
            data.clear()
        if chunk:
            data += chunk
            if len(data) <= MAX_REQUEST:
                return
            replies = [error_reply(DatapathError("E2BIG", f"request larger than {MAX_REQUEST} bytes"))]
        else:
            replies = self._evaluate(bytes(data))
        self._unwatch(fd)
        del self.conns[fd]
        try:
            conn.setblocking(True)
            conn.settimeout(2.0)
            conn.sendall(encode_replies(replies))
        except OSError:
            pass
        conn.close()

    def _evaluate(self, data: bytes) -> list[sxp.Value]:
        try:
            exprs = sxp.parse(data.decode("utf-8"), source="request")
        except (sxp.SxpError, UnicodeDecodeError) as e:
            return [error_reply(DatapathError("EINVAL", str(e)))]
        replies = []
        for expr in exprs:
            try:
                replies.append(ok_reply(language.evaluate(self, expr)))
            except DatapathError as e:
                replies.append(error_reply(e))
                break
            except Exception as e:  # a bug must not kill the datapath; the caller hears of it
                log.exception("command failed: %s", sxp.show(expr))
                replies.append(error_reply(DatapathError("EIO", f"internal error: {e}")))
                break
        return replies

    # ---- Datapath interface -----------------------------------------------------------

    def vnet_add(self, cfg: VnetConfig) -> None:
        held = keys.for_vnet(cfg.id, cfg.security, cfg.key_files)
        if cfg.id.packed in self.by_id:
            raise DatapathError("EEXIST", f"vnet {cfg.id} already exists")
        for v in self.by_id.values():
            if v.cfg.vnetif == cfg.vnetif:
                raise DatapathError("EEXIST", f"vnetif {cfg.vnetif} is already used by vnet {v.cfg.id}")
            if v.cfg.bridge == cfg.bridge:  # two vnets on one bridge would merge their LANs
                raise DatapathError("EEXIST", f"bridge {cfg.bridge} is already used by vnet {v.cfg.id}")
        if netdev.link_index(self.ipr, cfg.vnetif) is not None:
            raise DatapathError("EEXIST", f"a device named {cfg.vnetif} already exists on this host")
        # Super-frames need UDP: raw EtherIP sets DF and cannot carry 58 KB packets.
        offload = self.offload and cfg.encapsulation == "udp"
        fd = netdev.open_tap(cfg.vnetif, offload)
        try:
            netdev.quiet_ipv6(cfg.vnetif)
            if offload:
                netdev.limit_gso(self.ipr, cfg.vnetif)
            created = netdev.ensure_bridge(self.ipr, cfg.bridge)
            netdev.enslave(self.ipr, cfg.vnetif, cfg.bridge, mtu=cfg.mtu)
        except DatapathError:
            os.close(fd)
            raise
        v = Vnet(cfg, fd, created, held)
        self.by_id[v.vid] = v
        self._watch(fd, lambda: self._tap_readable(v))
        log.info("vnet %s up: %s on bridge %s (%s, security %s)", cfg.id, cfg.vnetif, cfg.bridge,
                 cfg.encapsulation, cfg.security)

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
        log.info("vnet %s: keys %s, sending with key %d", vid, " ".join(map(str, v.ciphers)), v.send_id)

    def vnet_del(self, vid: VnetId) -> None:
        v = self.by_id.pop(vid.packed, None)
        if v is None:
            raise DatapathError("ENOENT", f"vnet {vid} does not exist")
        self._close_vnet(v)
        log.info("vnet %s removed", vid)

    def _close_vnet(self, v: Vnet) -> None:
        self._unwatch(v.fd)
        os.close(v.fd)
        self.varp_cache.flush(v.vid)
        self.vif_table.flush(v.vid)

    def vnets(self) -> list[Record]:
        out = []
        for v in sorted(self.by_id.values(), key=lambda v: v.cfg.id):
            c = v.cfg
            extra = {"keys": [v.send_id] + [k for k in v.ciphers if k != v.send_id]} if v.level else {}
            out.append(records.vnet_record(
                c.id, c.vnetif, c.security, c.header, bridge=c.bridge,
                encapsulation=c.encapsulation, rx_packets=v.rx_packets, tx_packets=v.tx_packets,
                rx_bytes=v.rx_bytes, tx_bytes=v.tx_bytes, **extra))
        return out

    def _need_vnet(self, vid: VnetId) -> Vnet:
        v = self.by_id.get(vid.packed)
        if v is None:
            raise DatapathError("ENOENT", f"vnet {vid} does not exist")
        return v

    def vif_add(self, vid: VnetId, mac: bytes) -> None:
        self._need_vnet(vid)
        self.vif_table.touch(vid.packed, mac, time.monotonic())

    def vif_del(self, vid: VnetId, mac: bytes) -> None:
        self._need_vnet(vid)
        if not self.vif_table.remove(vid.packed, mac):
            raise DatapathError("ENOENT", f"no vif {mac.hex(':')} on vnet {vid}")

    def vifs(self) -> list[Record]:
        now = time.monotonic()
        out = [records.viftable_record(int(self.vif_table.ttl), self.vif_table.sweeps)]
        for (vid, mac), seen in sorted(self.vif_table.entries.items()):
            out.append(records.vif_record(vid, mac, now - seen))
        return out

    def peer_add(self, addr: str, port: int) -> None:
        peer = self.peer_table.get(addr)
        if peer is None:
            self.peer_table[addr] = Peer(addr, port)
        else:
            peer.port = port

    def peer_del(self, addr: str) -> None:
        if self.peer_table.pop(addr, None) is None:
            raise DatapathError("ENOENT", f"{addr} is not a peer")

    def peers(self) -> list[Record]:
        return [records.peer_record(p.addr, p.port, p.tx_packets, p.rx_packets)
                for p in sorted(self.peer_table.values(), key=lambda p: socket.inet_aton(p.addr))]

    def varp_flush(self) -> None:
        self.varp_cache.flush()

    def varp(self) -> list[Record]:
        now = time.monotonic()
        out = [records.varp_record(self.device, self.mcaddr, self.address, self.port,
                                   "etherip_in_udp", int(self.varp_cache.ttl))]
        for (vid, mac), e in sorted(self.varp_cache.entries.items()):
            out.append(records.ventry_record(vid, mac, e.addr, now - e.updated))
        return out

    def set_mcaddr(self, addr: str) -> None:
        check_group(addr)
        self.mcaddr = addr
        self.mcaddr_b = socket.inet_aton(addr)
        self._open_group()

    def stats(self) -> list[Record]:
        return [records.counters_record("counters", stats.named(stats.COUNTERS, self.counts)),
                records.counters_record("drops", stats.named(stats.DROPS, self.drops))]

    # ---- datapath: transmit (tap -> network) -----------------------------------------

    def _drain(self, receive, error: int):
        """Yield what receive() returns, at most BATCH times, until the descriptor is
        empty; a failure is counted as drop reason `error` and ends the batch.  The clock is read
        once per batch (self.now), not per packet.  Every receive loop uses this."""
        self.now = time.monotonic()
        for _ in range(BATCH):
            try:
                got = receive()
            except BlockingIOError:
                return
            except OSError:
                self.drops[error] += 1
                return
            yield got

    def _tap_readable(self, v: Vnet) -> None:
        vid = v.vid
        vifs = self.vif_table.entries
        cache = self.varp_cache.entries
        for frame in self._drain(functools.partial(os.read, v.fd, 65536 + VNET_HDR_LEN),
                                 D_TAP_READ_ERROR):
            # A super-frame keeps its partial checksum (the receiver re-segments it);
            # a plain frame must leave here complete.
            if frame[0] & 1 and len(frame) <= PLAIN_FRAME_MAX + VNET_HDR_LEN:
                frame = finish_checksum(frame)
            else:
                frame = memoryview(frame)[VNET_HDR_LEN:]
            if len(frame) < wire.ETH_HEADER_LEN:
                self.drops[D_TAP_RUNT] += 1
                continue
            v.tx_packets += 1
            v.tx_bytes += len(frame)
            src = bytes(frame[6:12])
            if not src[0] & 1:
                key = (vid, src)
                if key not in vifs:
                    self._local_mac_appeared(v, src)
                vifs[key] = self.now
            # Sealed once, whatever number of copies go out (doc/security.md).
            parts = self._seal(v, seal.TYPE_FRAME, frame) if v.level else (v.prefix, frame)
            if frame[0] & 1:
                self._flood(v, parts)
                continue
            entry = cache.get((vid, bytes(frame[0:6])))
            if entry is None:
                self.counts[C_UNKNOWN_UNICAST_FLOODS] += 1
                self._flood(v, parts)
                continue
            try:
                if v.udp:
                    self.usock.sendmsg(parts, (), 0, (entry.addr, self.port))
                else:
                    self.r97.sendmsg(parts, (), 0, (entry.addr, 0))
            except OSError:
                self.drops[D_SEND_ERROR] += 1

    def _seal(self, v: Vnet, msg_type: int, body) -> tuple:
        """Body sealed with the vnet's send key, numbered by this host's one counter."""
        self.seq += 1
        return seal.seal(v.send_cipher, v.level, msg_type, v.vid, v.send_id, self.address_b,
                         self.seq, body)

    def _flood(self, v: Vnet, parts: tuple) -> None:
        """One copy to the group, one VFWD copy to each peer (reference 4.6)."""
        self.counts[C_FLOODS] += 1
        n = sum(map(len, parts))
        if v.udp:
            self._multicast_udp(parts, n)
        else:
            try:
                self.r97.sendmsg(parts, (), 0, (self.mcaddr, 0))
            except OSError:
                self.drops[D_SEND_ERROR] += 1
            if self.peer_table:
                hdr = wire.ipv4_header(ZERO_ADDR, self.mcaddr_b, wire.IPPROTO_ETHERIP, n,
                                       df=True, checksum=False)
                self._to_peers((wire.VFWD_HEADER, hdr) + parts, None)

    def _multicast_udp(self, parts: tuple, length: int) -> None:
        try:
            self.usock.sendmsg(parts, (), 0, (self.mcaddr, self.port))
        except OSError:
            self.drops[D_SEND_ERROR] += 1
        if self.peer_table:
            inner = wire.vfwd_inner_udp(ZERO_ADDR, self.mcaddr_b, length)
            self._to_peers((wire.VFWD_HEADER, inner) + parts, None)

    def _to_peers(self, parts: tuple, origin: str | None) -> None:
        for peer in self.peer_table.values():
            if peer.addr == origin:
                continue
            try:
                self.usock.sendmsg(parts, (), 0, (peer.addr, peer.port))
                peer.tx_packets += 1
            except OSError:
                self.drops[D_SEND_ERROR] += 1

    def _local_mac_appeared(self, v: Vnet, mac: bytes) -> None:
        """A MAC seen here for the first time: claim it, so a moved VM is found at once."""
        self.varp_cache.forget(v.vid, mac)
        self.counts[C_ANNOUNCES_SENT] += 1
        msg = wire.pack_varp(wire.VARP_ANNOUNCE, v.vid, mac, self.address)
        parts = self._seal(v, seal.TYPE_VARP, msg) if v.level else (msg,)
        self._multicast_udp(parts, sum(map(len, parts)))

    # ---- datapath: receive (network -> tap) ---------------------------------------------

    def _udp_readable(self) -> None:
        """Unicast to us: frames for our MACs, VARP replies, peers' VFWD packets."""
        mv = self.mv
        for n, (src, _sport) in self._drain(functools.partial(self.usock.recvfrom_into, self.buf),
                                            D_RECV_ERROR):
            if src in self.self_addrs:
                continue
            self.counts[C_UDP_RECEIVED] += 1
            if n < wire.VNET_MSG_HEADER_LEN:
                self.drops[D_SHORT] += 1
                continue
            self._dispatch(mv[:n], src, vfwd_ok=True)

    def _group_readable(self, sock: socket.socket) -> None:
        """Multicast to the group: relay it to peers (keeping its TTL budget), then handle it."""
        buf, mv = self.buf, self.mv
        receive = functools.partial(sock.recvmsg_into, [buf], socket.CMSG_SPACE(4))
        for n, anc, _flags, (src, _sport) in self._drain(receive, D_RECV_ERROR):
            if src in self.self_addrs:
                continue
            self.counts[C_UDP_RECEIVED] += 1
            if n < wire.VNET_MSG_HEADER_LEN:
                self.drops[D_SHORT] += 1
                continue
            pkt = mv[:n]
            if self._duplicate(src, pkt):
                self.drops[D_DUPLICATE] += 1
                continue
            if self.peer_table and not (buf[0] == 0 and buf[1] == wire.MSG_VFWD):
                ttl = anc[0][2][0] if anc else wire.DEFAULT_TTL
                inner = wire.vfwd_inner_udp(socket.inet_aton(src), self.mcaddr_b, n, ttl=ttl)
                self._to_peers((wire.VFWD_HEADER, inner, pkt), src)
            self._dispatch(pkt, src, vfwd_ok=False)

    def _dispatch(self, pkt: memoryview, src: str, vfwd_ok: bool) -> None:
        msg = pkt[0] << 8 | pkt[1]
        if msg == wire.MSG_VUDP:
            self._etherip(pkt[wire.VNET_MSG_HEADER_LEN:], src)
        elif msg == seal.MSG_SEALED:
            self._sealed(pkt, raw=False)
        elif msg == wire.MSG_VARP:
            self._varp(pkt, src)
        elif msg == wire.MSG_VFWD and vfwd_ok:
            self._vfwd(pkt, src)
        else:
            self.drops[D_BAD_MESSAGE_ID] += 1

    def _raw(self, pkt: memoryview, src: str) -> None:
        """An IP protocol 97 payload: a sealed message (00 04) or plain EtherIP."""
        if len(pkt) > 1 and pkt[0] == 0 and pkt[1] == seal.MSG_SEALED:
            self._sealed(pkt, raw=True)
        else:
            self._etherip(pkt, src)

    def _etherip(self, pkt: memoryview, src: str) -> None:
        """Plain EtherIP: a raw payload, or a VUDP packet after its 4-byte header."""
        if len(pkt) < wire.ETHERIP_HEADER_LEN + wire.ETH_HEADER_LEN:
            self.drops[D_SHORT] += 1
            return
        if not wire.etherip_version_ok(pkt[0], pkt[1]):
            self.drops[D_BAD_VERSION] += 1
            return
        v = self._plain_vnet(pkt[2:18])
        if v is not None:
            self._deliver(v, pkt[wire.ETHERIP_HEADER_LEN:], src)

    def _plain_vnet(self, vid) -> Vnet | None:
        """The vnet an unsealed frame or VARP message names, or None with the drop
        counted: unknown, or secure and so taking sealed messages only."""
        v = self.by_id.get(bytes(vid))
        if v is None:
            self.drops[D_UNKNOWN_VNET] += 1
        elif v.level:
            self.drops[D_UNPROTECTED] += 1
            return None
        return v

    def _sealed(self, pkt: memoryview, raw: bool) -> None:
        """A sealed message (doc/security.md): checked in the documented order, and
        nothing is learned, answered or delivered unless every check passes."""
        if len(pkt) < seal.OVERHEAD:
            self.drops[D_SHORT] += 1
            return
        _id, mtype, level, vid, key_id, sender, seq = seal.HEADER.unpack_from(pkt)
        v = self.by_id.get(vid)
        if v is None:
            self.drops[D_UNKNOWN_VNET] += 1
            return
        if level != v.level or not level:  # a (security none) vnet takes no sealed message
            self.drops[D_SECURITY_MISMATCH] += 1
            return
        cipher = v.ciphers.get(key_id)
        if cipher is None:
            self.drops[D_UNKNOWN_KEY] += 1
            return
        window = v.windows.get(sender)
        if window is not None and not window.fresh(seq):
            self.drops[D_REPLAY] += 1
            return
        try:
            body = seal.unseal(cipher, level, pkt)
        except seal.InvalidTag:
            self.drops[D_BAD_TAG] += 1
            return
        if mtype == seal.TYPE_FRAME:
            ok = len(body) >= wire.ETH_HEADER_LEN
        else:
            ok = (mtype == seal.TYPE_VARP and not raw and len(body) >= wire.VARP_LEN
                  and body[4:20] == vid)
        if not ok:
            self.drops[D_BAD_SEAL] += 1
            return
        if window is None:
            if len(v.windows) >= MAX_SENDERS:
                self.drops[D_REPLAY] += 1  # no room to remember it: refuse, never forget one
                return
            window = v.windows[sender] = seal.ReplayWindow()
        window.record(seq)
        src = socket.inet_ntoa(sender)
        if mtype == seal.TYPE_FRAME:
            self._deliver(v, body, src)
        else:
            self._varp_message(v, memoryview(body), src)

    def _deliver(self, v: Vnet, frame, src: str) -> None:
        """Learn where the frame's source lives and write the frame to the vnet's tap."""
        smac = bytes(frame[6:12])
        if smac[0] & 1:
            self.drops[D_BAD_SOURCE_MAC] += 1
            return
        self.varp_cache.learn(v.vid, smac, src, self.now)
        try:
            hdr = ZERO_HDR if len(frame) <= PLAIN_FRAME_MAX else gso_header(frame, v.mtu)
            os.writev(v.fd, (hdr, frame))
        except OSError:
            self.drops[D_TAP_WRITE_ERROR] += 1
            return
        v.rx_packets += 1
        v.rx_bytes += len(frame)

    def _varp(self, pkt: memoryview, src: str) -> None:
        if len(pkt) < wire.VARP_LEN:
            self.drops[D_SHORT] += 1
            return
        v = self._plain_vnet(pkt[4:20])
        if v is not None:
            self._varp_message(v, pkt, src)

    def _varp_message(self, v: Vnet, pkt, src: str) -> None:
        """A VARP message for vnet v that passed its checks (plain, or unsealed)."""
        op, vid, vmac, family, addr16 = wire.unpack_varp(pkt)
        if op == wire.VARP_REQUEST:
            self.counts[C_VARP_REQUESTS] += 1
            if self.vif_table.has(vid, vmac):
                msg = wire.pack_varp(wire.VARP_ANNOUNCE, vid, vmac, self.address)
                parts = self._seal(v, seal.TYPE_VARP, msg) if v.level else (msg,)
                try:
                    self.usock.sendmsg(parts, (), 0, (src, self.port))
                    self.counts[C_ANNOUNCES_SENT] += 1
                except OSError:
                    self.drops[D_SEND_ERROR] += 1
        elif op == wire.VARP_ANNOUNCE:
            if family != wire.AF_INET_VARP:
                self.drops[D_BAD_FAMILY] += 1
                return
            addr = socket.inet_ntoa(addr16[:4])
            if addr in self.self_addrs or not is_host_ipv4(addr):
                return
            self.counts[C_ANNOUNCES_RECEIVED] += 1
            self.vif_table.remove(vid, vmac)  # it lives elsewhere now
            self.varp_cache.learn(vid, vmac, addr, self.now)
        else:
            self.drops[D_BAD_OPCODE] += 1

    def _vfwd(self, pkt: memoryview, src: str) -> None:
        """A multicast packet relayed by a peer (reference section 5)."""
        peer = self.peer_table.get(src)
        if peer is None:
            self.drops[D_NOT_A_PEER] += 1
            return
        peer.rx_packets += 1
        inner = pkt[wire.VNET_MSG_HEADER_LEN:]
        if len(inner) < wire.IPV4_HEADER_LEN or inner[0] >> 4 != 4:
            self.drops[D_BAD_FORWARD] += 1
            return
        ihl = (inner[0] & 0x0F) * 4
        total = inner[2] << 8 | inner[3]
        proto, ttl = inner[9], inner[8]
        if ihl < wire.IPV4_HEADER_LEN or total < ihl or total > len(inner) or inner[16] & 0xF0 != 0xE0:
            self.drops[D_BAD_FORWARD] += 1
            return
        origin_b = bytes(inner[12:16])
        if origin_b == ZERO_ADDR:
            origin_b = socket.inet_aton(src)
        origin = socket.inet_ntoa(origin_b)
        if origin in self.self_addrs:
            self.drops[D_OWN_PACKET] += 1
            return
        body = inner[ihl:total]
        if proto == wire.IPPROTO_UDP:
            if len(body) < wire.UDP_HEADER_LEN + wire.VNET_MSG_HEADER_LEN:
                self.drops[D_BAD_FORWARD] += 1
                return
            payload = body[wire.UDP_HEADER_LEN:]
        elif proto == wire.IPPROTO_ETHERIP and len(body) >= 2:
            payload = body
        else:
            self.drops[D_BAD_FORWARD] += 1
            return
        if not self.flood_filter.first_time(origin, payload, self.now):
            self.drops[D_DUPLICATE] += 1
            return
        self.counts[C_FORWARDS_RECEIVED] += 1
        if proto == wire.IPPROTO_UDP:
            self._dispatch(payload, origin, vfwd_ok=False)
        else:
            self._raw(payload, origin)
        if ttl <= 1:  # delivered here, but its hop budget is spent: no re-send
            self.drops[D_HOP_LIMIT] += 1
            return
        # Re-send on our LAN as if the origin had multicast it here (spoofed source).
        hdr = wire.ipv4_header(origin_b, self.mcaddr_b, proto, len(body), ttl=ttl - 1,
                               df=proto == wire.IPPROTO_ETHERIP)
        try:
            self.rawout.sendmsg((hdr, body), (), 0, (self.mcaddr, 0))
        except OSError:
            self.drops[D_SEND_ERROR] += 1

    def _raw_readable(self) -> None:
        """Raw EtherIP (protocol 97): unicast to us, or multicast to the group."""
        buf, mv = self.buf, self.mv
        for n, (src, _) in self._drain(functools.partial(self.r97.recvfrom_into, buf), D_RECV_ERROR):
            if src in self.self_addrs or n < wire.IPV4_HEADER_LEN:
                continue
            self.counts[C_ETHERIP_RECEIVED] += 1
            ihl = (buf[0] & 0x0F) * 4
            dst = buf[16:20]
            pkt = mv[ihl:n]
            if dst[0] & 0xF0 == 0xE0:
                if dst != self.mcaddr_b:
                    self.drops[D_OTHER_GROUP] += 1
                    continue
                if self._duplicate(src, pkt):
                    self.drops[D_DUPLICATE] += 1
                    continue
                if self.peer_table:  # keeping its TTL budget, as UDP relays do
                    hdr = wire.ipv4_header(socket.inet_aton(src), self.mcaddr_b, wire.IPPROTO_ETHERIP,
                                           len(pkt), ttl=buf[8], df=True, checksum=False)
                    self._to_peers((wire.VFWD_HEADER, hdr, pkt), src)
            self._raw(pkt, src)

    # ---- main loop -------------------------------------------------------------------

    def run(self) -> None:
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        while self.running:
            try:
                events = self.ep.poll(1.0)
            except InterruptedError:
                continue
            for fd, _ev in events:
                handler = self.handlers.get(fd)
                if handler is not None:
                    handler()
            now = time.monotonic()
            if now >= next_sweep:
                self.varp_cache.sweep(now)
                self.vif_table.sweep(now)
                self.flood_filter.sweep(now)
                next_sweep = now + SWEEP_INTERVAL

    def stop(self, *_args) -> None:
        self.running = False

    def shutdown(self) -> None:
        """Remove what we made: taps, bridges we created that nothing else uses, the socket."""
        for v in list(self.by_id.values()):
            self._close_vnet(v)
            if v.bridge_created:
                ports = netdev.bridge_ports(self.ipr, v.cfg.bridge)
                if not ports:
                    netdev.delete_link(self.ipr, v.cfg.bridge)
                else:
                    log.info("leaving bridge %s: still has ports %s", v.cfg.bridge, ", ".join(ports))
        self.by_id.clear()
        if self.socket_path is not None and hasattr(self, "lsock"):
            self.lsock.close()
            try:
                self.socket_path.unlink()
            except FileNotFoundError:
                pass
        for conn, _ in self.conns.values():
            conn.close()
        for s in (self.usock, self.msock, self.r97, self.rawout, self.lock):
            if s is not None:
                s.close()
        self.ep.close()
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
              help="Move TCP super-frames (longer than 1514 bytes) between vnet hosts in one "
                   "datagram; turn off when a peer cannot take frames longer than the MTU.")
@click.option("-V", "--verbose", is_flag=True, help="Log control operations.")
@click.version_option(__version__, "-v", "--version", prog_name="vnetd")
def cli(state_dir, socket_opt, address, interface, mcaddr, ttl, no_restore, offload, verbose) -> None:
    """The user-space vnet datapath: tap devices, EtherIP-in-UDP on port 1798, VARP, peers."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="vnetd: %(message)s", stream=sys.stderr)
    sdir = resolve_state_dir(state_dir)
    store = StateStore(sdir)
    try:
        state = None if no_restore else store.load()
        if mcaddr is not None:  # the command line wins over the persisted group
            mcaddr = parse_ipv4(mcaddr)
        elif state is not None:
            mcaddr = state.settings.get("mcaddr")
        with IPRoute() as ipr:
            address = parse_ipv4(address) if address else pick_address(ipr, interface)
        daemon = Vnetd(address, mcaddr or wire.DEFAULT_GROUP, ttl=ttl, offload=offload)
    except (DatapathError, StateError, ValueError) as e:
        raise click.ClickException(str(e))
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    try:
        daemon.listen(resolve_socket(socket_opt, sdir))
        if state is not None:
            daemon.restore(state, sdir)
        log.warning("serving on %s, underlay %s (%s), group %s", daemon.socket_path, daemon.address,
                    daemon.device, daemon.mcaddr)
        daemon.run()
    except (DatapathError, StateError) as e:
        daemon.shutdown()
        raise click.ClickException(str(e))
    daemon.shutdown()


def main() -> None:
    cli(prog_name="vnetd")


if __name__ == "__main__":
    main()
