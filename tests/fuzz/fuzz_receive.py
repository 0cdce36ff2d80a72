"""Fuzz target: vnetd's receive rules (vnet/datapath/vnetd/receive.py), as the daemon
runs them per packet.

Each input is one or more packets (tests/fuzz/scenario.py: channel, source, TTL,
bytes): a UDP 1798 datagram to our address or to the group (VUDP, VARP, VFWD,
sealed), or a packet of IP protocol 97 as the raw socket reads it, IP header
included.  They go to `Receive.from_udp` / `from_raw` of one host with vnets of every
kind (plain, auth with two keys, conf, raw EtherIP with two attachments, MTU 68), two peers
and a local VM.  Its taps are datagram socketpairs and its senders real UDP sockets
that send everything to a sink on 127.0.0.1, so every write and send is a real one.

Beyond "no exception escapes" (the daemon calls these without a try), each packet
must have exactly one outcome: ignored silently (from one of our own addresses or
loopback) with nothing counted, or counted received and then exactly one of a drop
by reason, a frame delivered, a VARP message taken, a challenge answered or a session
confirmed; and everything delivered and sent (challenges and answers too) is
accounted for by the counters.  Soft state is reset between inputs, so a
crash replays from its input alone.
"""
from __future__ import annotations

import select
import socket

from tests.fuzz import scenario as sc
from tests.fuzz.harness import instrumented, run

with instrumented():
    from vnet.datapath.vnetd.attach import Tap
    from vnet.datapath.vnetd.loop import Clock
    from vnet.datapath.vnetd.receive import Receive
    from vnet.datapath.vnetd.tables import Peer, Tables
    from vnet.datapath.vnetd.transmit import Transmit
    from vnet.datapath.vnetd.underlay import Underlay
    from vnet.datapath.vnetd.vnets import SenderEntry, Vnet
    from vnet.model.config import VnetConfig
    from vnet.model.keys import Key
    from vnet.wire import stats

T0 = 1000.0
#: Drops that come after a packet's outcome, not instead of one: a spent hop budget
#: (delivered, not re-sent), a relay too big for one datagram, a failed send.
AFTER = {stats.D_HOP_LIMIT, stats.D_OVERSIZE, stats.D_SEND_ERROR}
#: Sends to 127.0.0.1 and writes to a drained socketpair do not fail: one that does
#: is a bug in what the rules hand to sendmsg/writev.
NEVER = {stats.D_SEND_ERROR, stats.D_TAP_WRITE_ERROR}
TAKEN = (stats.C_VARP_REQUESTS, stats.C_ANNOUNCES_RECEIVED, stats.C_ANSWERS_SENT, stats.C_SESSIONS_CONFIRMED)
#: What the rules send on their own besides announces and relays.
SENT = (stats.C_ANNOUNCES_SENT, stats.C_CHALLENGES_SENT, stats.C_ANSWERS_SENT)
#: The senders whose session (sc.SESSION) is confirmed at reset, on every secure vnet.
CONFIRMED = (sc.A, sc.B, sc.C, sc.FAR)
#: Our own session (a fixed one: a crash replays from its input alone).
OURS = bytes(range(0x30, 0x40))


class ToSink:
    """A Sender: a real UDP socket whose every send goes to the sink on 127.0.0.1,
    whatever address the rules give (their peers and group are not reachable here)."""

    def __init__(self, sink: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sink = sink

    def sendmsg(self, buffers, ancdata=(), flags: int = 0, address=None) -> int:
        return self.sock.sendmsg(buffers, ancdata, flags, self.sink)


def drain(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            sock.recv(70000)
        except BlockingIOError:
            return n
        n += 1


class Host:
    """One vnetd host's receive rules over real sockets (scenario.py's host)."""

    def __init__(self) -> None:
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.sink.setblocking(False)
        self.sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        to = self.sink.getsockname()
        here = Underlay(sc.HERE, sc.PREFIX_LEN, {sc.HERE, sc.HERE2}, "eth0", 2, sc.GROUP)
        self.tables = Tables()
        self.clock = Clock(T0)
        tx = Transmit(here, ToSink(to), ToSink(to), self.tables, self.clock, session=OURS, counter=1)
        self.rx = Receive(here, ToSink(to), self.tables, self.clock, tx)
        self.taps: list[tuple[Vnet, list[socket.socket]]] = []
        self.ours: list[socket.socket] = []  # the vnets' ends: kept open for the process's life
        for name, (security, encapsulation, key_ids, n_attached, mtu) in sc.VNETS.items():
            cfg = VnetConfig.from_cli(name, security=security, encapsulation=encapsulation, mtu=mtu)
            ends = [self.tap_pair() for _ in range(n_attached)]
            self.ours += [ours for ours, _ in ends]
            v = Vnet(cfg, ends[0][0].fileno(), False, [Key(i, sc.KEYS[i]) for i in key_ids])
            if n_attached > 1:
                v.attachments = [Tap(f"{cfg.vnetif}-{i}", ours.fileno()) for i, (ours, _) in enumerate(ends)]
                v.switching = True
            self.tables.vnets[v.vid] = v
            self.taps.append((v, [theirs for _, theirs in ends]))
        for addr in sc.PEERS:
            self.tables.peers[addr] = Peer(addr, 1798)
        self.vifs = {(v.vid, mac): T0 for v, _ in self.taps for mac in sc.LOCAL_MACS}
        self.vnets = [v for v, _ in self.taps]
        self.ends = [ends for _, ends in self.taps]
        self.peers = list(self.tables.peers.values())
        self.by_fd = {s.fileno(): s for s in [self.sink, *(s for ends in self.ends for s in ends)]}
        self.fds = list(self.by_fd)
        self.poller = select.poll()
        for fd in self.fds:
            self.poller.register(fd, select.POLLIN)

    @staticmethod
    def tap_pair() -> tuple[socket.socket, socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)
        theirs.setblocking(False)
        return ours, theirs

    def reset(self) -> None:
        """Forget what earlier inputs taught: caches, sender entries, flood filter, local
        MACs; then confirm the seeds' session for every sender, through the entries'
        API as an answer would, with a challenge pending for B."""
        t = self.tables
        t.varp.flush()
        plain = {v.vid: not v.level for v, _ in self.taps}
        for vid in plain:
            t.vifs.flush(vid)
        for (vid, mac), seen in self.vifs.items():  # through add: the tables count their entries
            t.vifs.add(vid, mac, seen, plain[vid])
        t.floods.seen.clear()
        t.supers.addrs.clear()
        for v, _ in self.taps:
            v.senders.clear()
            v.macs.clear()
            if v.level:
                for addr in CONFIRMED:
                    e = v.senders[socket.inet_aton(addr)] = SenderEntry()
                    e.confirm(sc.SESSION, 0)
                b = v.senders[socket.inet_aton(sc.B)]
                b.challenge, b.sent = sc.CHALLENGE, T0

    def packet(self, channel: int, src: str, ttl: int, payload: bytes) -> None:
        """Hand one packet to the rules and check its outcome.  This runs a million
        times a target run: lists copied and summed in C, one poll for the sockets."""
        counts, drops, vnets = self.tables.counts, self.tables.drops, self.vnets
        counts0, drops0 = counts[:], drops[:]
        rx0 = [v.rx_packets for v in vnets]
        peers_tx0 = sum(p.tx_packets for p in self.peers)
        pkt = memoryview(payload)
        if channel == sc.UNICAST:
            self.rx.from_udp(pkt, src)
        elif channel == sc.GROUP_UDP:
            self.rx.from_udp(pkt, src, ttl)
        else:
            self.rx.from_raw(pkt, src)
        written = dict.fromkeys(self.fds, 0)
        for fd, _ in self.poller.poll(0):
            written[fd] = drain(self.by_fd[fd])

        def grew(i: int, now: list[int] = counts, then: list[int] = counts0) -> int:
            return now[i] - then[i]

        received = grew(stats.C_UDP_RECEIVED) + grew(stats.C_ETHERIP_RECEIVED)
        after = sum(grew(i, drops, drops0) for i in AFTER)
        dropped = sum(drops) - sum(drops0) - after
        delivered = [v.rx_packets - n for v, n in zip(vnets, rx0)]
        taken = sum(grew(i) for i in TAKEN)
        outcomes = dropped + sum(delivered) + taken
        assert received in (0, 1), f"one packet counted received {received} times"
        assert outcomes == received, (f"{outcomes} outcomes for {received} packets received: "
                                      f"drops now {stats.named(stats.DROPS, drops)}")
        assert not any(grew(i, drops, drops0) for i in NEVER), \
            f"a send or tap write failed: {stats.named(stats.DROPS, drops)}"
        forwarded = grew(stats.C_FORWARDS_RECEIVED)
        assert forwarded <= received
        for n, ends in zip(delivered, self.ends):
            # One attachment gets each frame (two when switching floods it to both).
            frames = sum(written[s.fileno()] for s in ends)
            assert n <= frames <= n * len(ends), f"{n} frames delivered, {frames} written"
        resent = forwarded - grew(stats.D_HOP_LIMIT, drops, drops0)
        expected = sum(grew(i) for i in SENT) + sum(p.tx_packets for p in self.peers) - peers_tx0 + resent
        sent = written[self.sink.fileno()]
        assert sent == expected, f"{sent} datagrams sent, the counters account for {expected}"


HOST = Host()


def one_input(data: bytes) -> None:
    HOST.reset()
    for channel, src, ttl, payload in sc.records(data):
        HOST.packet(channel, src, ttl, payload)


if __name__ == "__main__":
    run(one_input)
