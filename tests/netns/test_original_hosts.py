"""Hosts of the original Xen vnet in one vnet with ours (doc/wire-format.md,
"Differences from Xen vnet"): the original forwarder's VFWD relays, whose inner IP
header has only protocol, source and destination filled in, reach our VMs from a
peer and are dropped from anyone else.  Needs root.

Written for both datapaths: tests/kernel/in_guest/test_kmod_scenarios.py runs them
with the kernel module."""
from __future__ import annotations

import socket
import struct

import pytest
from conftest import EXAMPLES, needs_root

from lab.capture import Capture
from lab.traffic import send_datagrams, transfer
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire

pytestmark = [needs_root, pytest.mark.root]

GROUP = wire.DEFAULT_GROUP
#: The host on the original's subnet whose multicast the original forwarder relays.
ORIGIN = "10.0.0.2"
#: A VM behind ORIGIN.
GHOST = bytes.fromhex("aa0000000002")
GHOST_IP = "10.97.0.99"
#: The relay of issue 13, from the vnet message header to the Ethernet frame, as the
#: original forwarder sends it: the inner IP header has only protocol 17, source
#: 10.0.0.2 and destination 224.10.0.1; the inner UDP length is 0.
RELAY_HEAD = bytes.fromhex(
    "00030000"
    "0000000000000000" "00110000" "0a000002" "e00a0001"
    "0706070600000000"
    "00020000" "0040" "00000000000000000000000000000097")


def relay(frame: bytes) -> bytes:
    return RELAY_HEAD + frame


def arp_request(target_ip: str) -> bytes:
    """GHOST asking for target_ip: 42 bytes, so the relay's outer UDP length is 0x68."""
    return (b"\xff" * 6 + GHOST + b"\x08\x06" + bytes.fromhex("0001080006040001") + GHOST
            + socket.inet_aton(GHOST_IP) + bytes(6) + socket.inet_aton(target_ip))


def icmp_echo(dst_mac: bytes, dst_ip: str) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, 0x1313, 1) + b"original relay"
    body = body[:2] + struct.pack("!H", wire.ipv4_checksum(body)) + body[4:]
    ip = wire.ipv4_header(socket.inet_aton(GHOST_IP), socket.inet_aton(dst_ip), 1, len(body))
    return dst_mac + GHOST + b"\x08\x00" + ip + body


def from_ghost(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if f[6:12] == GHOST]


def group_resends(frames: list[bytes]) -> list[bytes]:
    """IPv4 packets from ORIGIN to the group seen on the switch: our re-sends."""
    return [f[14:] for f in frames if f[12:14] == b"\x08\x00" and f[14 + 12:14 + 16] == socket.inet_aton(ORIGIN)
            and f[14 + 16:14 + 20] == socket.inet_aton(GROUP)]


def delta(before: dict, after: dict, name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def test_original_forwarders_relays_reach_our_vms(lab, make_hosts):
    """The relay of issue 13 carrying an ARP request, and one carrying an ICMP echo,
    from a peer: delivered to VM a behind host 1, and re-sent on host 1's LAN once,
    with TTL 1 and the real UDP length, so VM b behind host 2 hears the broadcast.
    From a host that is not a peer: dropped and counted."""
    sw = lab.switch("sw")
    h1, h2 = make_hosts(2, switch=sw, first=3)  # 10.0.0.2 is the original's host
    forwarder = lab.host("orig", sw, "10.0.0.66/24")  # the original forwarder
    stranger = lab.host("x", sw, "10.0.0.67/24")
    for h in (h1, h2):
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    h1.vn("peer-add", forwarder.ip)
    a = lab.vm("a", h1.host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", h2.host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    a_mac = bytes.fromhex(a.mac.replace(":", ""))
    arp = relay(arp_request(a.ip))
    assert len(arp) + wire.UDP_HEADER_LEN == 0x68  # the outer UDP length
    echo = relay(icmp_echo(a_mac, a.ip))
    vid = VnetId.parse("97").packed
    assert arp[36:54] == b"\x00\x40" + vid

    with Capture(lab, a, bridge="") as at_a, Capture(lab, sw) as wire_cap:
        before = h1.counters()
        send_datagrams(lab, stranger, h1.ip, [arp, echo], sport=wire.PORT)
        after = h1.wait_counters(before, {"drop:not-a-peer": 2})
        assert delta(before, after, "drop:not-a-peer") == 2, (before, after)
        assert delta(before, after, "forwards-received") == 0, (before, after)
        assert h1.varp_table("97").get(GHOST.hex(":")) is None

        before = h1.counters()
        send_datagrams(lab, forwarder, h1.ip, [arp, echo], sport=wire.PORT)
        after = h1.wait_counters(before, {"forwards-received": 2})
        got = at_a.wait_for(lambda fs: len(from_ghost(fs)) >= 2, "the ARP request and the echo at VM a")
        resends = wire_cap.wait_for(lambda fs: len(group_resends(fs)) >= 2, "host 1's re-sends on its LAN")
    assert delta(before, after, "forwards-received") == 2, (before, after)
    for reason in ("bad-forward", "not-a-peer", "hop-limit", "bad-sender", "own-packet"):
        assert delta(before, after, "drop:" + reason) == 0, (reason, before, after)
    frames = from_ghost(got)
    assert frames[0] == arp[len(RELAY_HEAD):], frames[0].hex()
    assert frames[1] == echo[len(RELAY_HEAD):], frames[1].hex()
    assert h1.varp_table("97")[GHOST.hex(":")] == ORIGIN
    for ip, sent in zip(group_resends(resends), (arp, echo)):
        ihl = (ip[0] & 15) * 4
        assert ip[0] >> 4 == 4 and ip[8] == 1 and ip[9] == 17, ip[:20].hex()  # TTL 1: no further
        payload = sent[len(wire.VFWD_HEADER) + wire.IPV4_HEADER_LEN + wire.UDP_HEADER_LEN:]
        assert int.from_bytes(ip[2:4], "big") == ihl + wire.UDP_HEADER_LEN + len(payload), ip[:20].hex()
        udp = ip[ihl:]
        assert int.from_bytes(udp[4:6], "big") == 8 + len(payload), udp[:8].hex()
        assert udp[:4] == b"\x07\x06\x07\x06" and udp[8:8 + len(payload)] == payload
    # VM b behind host 2 heard the broadcast through host 1's re-send.
    with Capture(lab, b, bridge="") as at_b:
        send_datagrams(lab, forwarder, h1.ip, [relay(arp_request(b.ip))], sport=wire.PORT)
        at_b.wait_for(lambda fs: any(f[6:12] == GHOST and f[12:14] == b"\x08\x06" for f in fs),
                      "the relayed ARP request at VM b")
    assert lab.ping(a, b.ip, count=2).received == 2


#: Bytes per TCP transfer: the first super-frame, a few kilobytes in, is what an
#: original host cannot read, so this is plenty to see a transfer stall or complete.
TRANSFER = 1_000_000
#: The original receiver reads a datagram into a 1700-byte buffer.
ORIGINAL_DATAGRAM_MAX = 1700


def udp_length_prefixes(low: int) -> list[tuple[int, int]]:
    """(value, mask) pairs of 16-bit numbers that together match exactly low..65535."""
    out, n = [], low
    while n <= 0xFFFF:
        size = n & -n if n else 0x10000
        while n + size - 1 > 0xFFFF:
            size >>= 1
        out.append((n, ~(size - 1) & 0xFFFF))
        n += size
    return out


def classify_long_datagrams(lab, sw, port: str, drop: bool) -> None:
    """On the switch port towards a host: an HTB class for the datagrams to UDP 1798
    longer than the original can read (UDP length > 1708, read from the packet or from
    a first IP fragment, which carries the datagram's length), counted in class 1:2.
    With `drop` its queue holds nothing: such datagrams never arrive, as they never
    reach an original vnetd whole.  (This kernel has no tc drop action.)"""
    def tc(*args: str) -> None:
        lab.run(sw, ["tc", *args], check=True)

    tc("qdisc", "add", "dev", port, "root", "handle", "1:", "htb", "default", "1")
    for minor in ("1", "2"):
        tc("class", "add", "dev", port, "parent", "1:", "classid", f"1:{minor}", "htb", "rate", "100gbit")
    if drop:
        tc("qdisc", "add", "dev", port, "parent", "1:2", "handle", "20:", "pfifo", "limit", "0")
    for value, mask in udp_length_prefixes(ORIGINAL_DATAGRAM_MAX + wire.UDP_HEADER_LEN + 1):
        tc("filter", "add", "dev", port, "parent", "1:", "protocol", "ip", "u32",
           "match", "u8", "17", "0xff", "at", "9", "match", "u16", "0", "0x1fff", "at", "6",
           "match", "u16", str(wire.PORT), "0xffff", "at", "22",
           "match", "u16", str(value), hex(mask), "at", "24", "classid", "1:2")


def long_datagrams(lab, sw, port: str) -> int:
    """Packets class 1:2 of `port` has seen (sent or dropped)."""
    out = lab.run(sw, ["tc", "-s", "class", "show", "dev", port, "classid", "1:2"], check=True).stdout
    sent = int(out.split("Sent ")[1].split()[2])
    dropped = int(out.split("dropped ")[1].split(",")[0])
    return sent + dropped


def switch_port(lab, sw, host) -> str:
    """The switch's port cabled to `host`."""
    (name,) = [n for n in lab.nodes[sw.name].intfs if n.startswith(host.name)]
    return name


def test_an_original_receiver_gets_plain_frames_and_our_hosts_super_frames(lab, make_hosts):
    """Host 3 behaves like the original receiver: it never sends super-frames nor says
    it takes them (vnetd --no-offload), and no datagram longer than 1700 bytes reaches
    it.  A 4 MB TCP transfer from a VM behind default-configured host 1 arrives
    intact; between hosts 1 and 2 super-frames are still used."""
    sw = lab.switch("sw")
    h1, h2 = make_hosts(2, switch=sw)
    (orig,) = make_hosts(1, switch=sw, first=3, start=False, datapath="vnetd")
    orig.start("--no-offload")
    to_orig, to_h2 = switch_port(lab, sw, orig.host), switch_port(lab, sw, h2.host)
    classify_long_datagrams(lab, sw, to_orig, drop=True)
    classify_long_datagrams(lab, sw, to_h2, drop=False)
    for h in (h1, h2, orig):
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    a = lab.vm("a", h1.host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", h2.host, "vnet97", "10.97.0.2/24")
    c = lab.vm("c", orig.host, "vnet97", "10.97.0.3/24")
    lab.wait_ping(a, b.ip, timeout=20)
    lab.wait_ping(a, c.ip, timeout=20)
    lab.wait_ping(b, c.ip, timeout=20)
    # The filter works: of two datagrams, only the one the original could read arrives.
    before = orig.counters()
    send_datagrams(lab, h2.host, orig.ip, [bytes(ORIGINAL_DATAGRAM_MAX + 1), bytes(ORIGINAL_DATAGRAM_MAX)])
    orig.wait_counters(before, {"udp-received": 1})
    assert long_datagrams(lab, sw, to_orig) == 1
    transfer(lab, a, c, "tcp", TRANSFER)
    transfer(lab, b, c, "tcp", TRANSFER)
    assert long_datagrams(lab, sw, to_orig) == 1, "a super-frame was sent to the original host"
    transfer(lab, a, b, "tcp", TRANSFER)
    assert long_datagrams(lab, sw, to_h2) > 0, "no super-frame between our hosts"
    assert h1.varp_table("97").get(c.mac) == orig.ip
