"""The sender rule (doc/security.md): a message whose sender is this host itself, or an
address no host can have, is dropped and counted, on a secure vnet (the sealed header's
sender) and on a plain one (a VFWD's origin, a VARP announce's care-of address, the IP
source).  Needs root.

Written for both datapaths: tests/kernel/in_guest/test_kmod_sender_rule.py runs them
with the kernel module."""
from __future__ import annotations

import socket

import pytest
from conftest import needs_root
from netns.test_security import confirm_session, secure, sealed

from lab.capture import Capture, ipv4_payloads
from lab.traffic import send_datagrams
from lab.procs import script_argv
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire
from vnet.wire import seal

pytestmark = [needs_root, pytest.mark.root]

GROUP = wire.DEFAULT_GROUP
GHOST = bytes.fromhex("aa00000000e1")  # the source MAC of every forged frame
NO_HOST = ("127.0.0.1", "0.0.0.0", "224.1.2.3", "255.255.255.255")


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def delta(before: dict, after: dict, name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def test_our_own_sealed_floods_sent_back_are_dropped(lab, make_hosts, tmp_path):
    """A host without the key captures host 1's sealed floods and unicasts them back to
    host 1: the tag verifies, but the sender is host 1 itself."""
    sw = lab.switch("sw")
    hosts = make_hosts(2, switch=sw)
    h1 = hosts[0]
    attacker = lab.host("x", sw, "10.0.0.66/24")
    key = secure(hosts, tmp_path, "conf")
    a = lab.vm("a", h1.host, "vnet97", "10.97.0.1/24")
    c = lab.vm("c", h1.host, "vnet97", "10.97.0.3/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    assert lab.ping(c, a.ip, count=2).received == 2  # c knows a's MAC from here on

    def floods_of_a(frames: list[bytes]) -> list[bytes]:
        """Host 1's sealed floods of frames from VM a (the test holds the key; the
        attacker just replays what host 1 sent to the group)."""
        out = []
        for src, dst, p in ipv4_payloads(frames):
            if src == h1.ip and dst == GROUP and p[:3] == b"\x00\x05\x02":
                cipher = seal.aead(key.secret, p[seal.SESSION_AT:seal.COUNTER_AT])
                if bytes(seal.unseal(cipher, seal.CONF, p))[6:12] == mac_bytes(a.mac):
                    out.append(p)
        return out

    with Capture(lab, lab.nodes["sw"]) as cap:
        lab.run(a, script_argv(BROADCASTS, "10.97.0.255"), check=True)  # floods
        captured = floods_of_a(cap.wait_for(lambda fs: len(floods_of_a(fs)) >= 3, "3 sealed floods of VM a"))
    before = h1.counters()
    send_datagrams(lab, attacker, h1.ip, captured[:3])
    h1.wait_counters(before, {"udp-received": 3})
    varp = h1.varp_table()
    assert varp.get(a.mac) != h1.ip, f"host 1 learned its own VM at its own address: {varp}"
    assert a.mac not in varp, varp
    # Local traffic still reaches a (no bridge learned a's MAC at the vnet device).
    r = lab.ping(c, a.ip, count=3)
    assert r.received == 3 and r.duplicates == 0, r.output
    after = h1.wait_counters(before, {"drop:own-packet": 3})
    assert delta(before, after, "drop:own-packet") == 3, (before, after)
    for reason in ("replay", "bad-tag", "bad-sender"):
        assert delta(before, after, "drop:" + reason) == 0, (reason, before, after)
    r = lab.ping(b, a.ip, count=3)
    assert r.received == 3, r.output


def test_forged_senders_are_dropped_and_counted(lab, make_hosts, tmp_path):
    """Own, loopback, zero, multicast and broadcast senders: in the sealed header, a
    sealed announce's address, a VFWD's origin and a plain announce's address."""
    sw = lab.switch("sw")
    hosts = make_hosts(2, switch=sw)
    h1, h2 = hosts
    attacker = lab.host("x", sw, "10.0.0.66/24")
    key = secure(hosts, tmp_path, "conf")
    for h in hosts:
        h.vn("vnet-create", "98")
    h1.vn("peer-add", attacker.ip)  # so that its VFWD packets get past not-a-peer
    a = lab.vm("a", h1.host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", h2.host, "vnet97", "10.97.0.2/24")
    p = lab.vm("p", h1.host, "vnet98", "10.98.0.1/24")
    q = lab.vm("q", h2.host, "vnet98", "10.98.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    lab.wait_ping(p, q.ip, timeout=20)
    vid97, vid98 = VnetId.parse("97").packed, VnetId.parse("98").packed
    to_a = mac_bytes(a.mac) + GHOST + b"\x88\xb5" + bytes(50)
    to_p = mac_bytes(p.mac) + GHOST + b"\x88\xb5" + bytes(50)
    # The sealed announces below pass every check but the announced address: they come
    # from a key holder (the attacker's address) whose session host 1 confirmed.
    key_holder = attacker.ip
    seq = confirm_session(lab, attacker, h1, key, seal.CONF, key_holder)

    def vfwd(origin: str) -> bytes:
        inner = wire.vudp_prefix(vid98) + to_p
        return wire.VFWD_HEADER + wire.vfwd_inner_udp(socket.inet_aton(origin), socket.inet_aton(GROUP),
                                                      len(inner), ttl=1) + inner

    def announce(vid: bytes, addr: str) -> bytes:
        return wire.pack_varp(wire.VARP_ANNOUNCE, vid, GHOST, addr)

    own = [
        sealed(key, seal.CONF, seal.TYPE_FRAME, to_a, h1.ip, seq),
        sealed(key, seal.CONF, seal.TYPE_VARP, announce(vid97, h1.ip), key_holder, seq + 1),
        vfwd(h1.ip),
        announce(vid98, h1.ip),
    ]
    bad = ([sealed(key, seal.CONF, seal.TYPE_FRAME, to_a, addr, seq + 10 + i) for i, addr in enumerate(NO_HOST)]
           + [sealed(key, seal.CONF, seal.TYPE_VARP, announce(vid97, addr), key_holder, seq + 20 + i)
              for i, addr in enumerate(NO_HOST)]
           + [vfwd(addr) for addr in NO_HOST if addr != "0.0.0.0"]  # origin 0: the peer itself
           + [announce(vid98, addr) for addr in NO_HOST])
    with Capture(lab, a, bridge="") as at_a, Capture(lab, p, bridge="") as at_p:
        before = h1.counters()
        send_datagrams(lab, attacker, h1.ip, own + bad)
        after = h1.wait_counters(before, {"drop:own-packet": len(own), "drop:bad-sender": len(bad)})
        assert delta(before, after, "drop:own-packet") == len(own), (before, after)
        assert delta(before, after, "drop:bad-sender") == len(bad), (before, after)
        # A host's own IP source (here: a local process sending from loopback) is
        # ignored silently; the counted datagram after it shows it was handled.
        local = wire.vudp_prefix(vid98) + to_p
        lab.run(h1.host, script_argv(LOOPBACK, local.hex()), check=True)
        send_datagrams(lab, attacker, h1.ip, [announce(vid98, "127.0.0.2")])
        h1.wait_counters(after, {"drop:bad-sender": 1})
    assert not any(f[6:12] == GHOST for f in at_a.frames + at_p.frames), "a forged frame reached a VM"
    varp = h1.varp_table()
    assert GHOST.hex(":") not in varp, varp
    for reason in ("bad-tag", "replay", "unprotected", "not-a-peer"):
        assert delta(before, h1.counters(), "drop:" + reason) == 0, reason
    # Nothing learned or moved: both vnets work.
    assert lab.ping(a, b.ip, count=2).received == 2
    assert lab.ping(p, q.ip, count=2).received == 2


#: Three UDP broadcasts on the VM's LAN, which its host floods.
BROADCASTS = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for i in range(3):
    s.sendto(b"flood %d" % i, (sys.argv[1], 9))
"""

#: A plain frame to port 1798 from a loopback address, as any local process can send.
LOOPBACK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.2", 0))
s.sendto(bytes.fromhex(sys.argv[1]), ("127.0.0.1", 1798))
"""
