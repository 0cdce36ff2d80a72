"""Per-start sessions on secure vnets (doc/security.md, "Sessions"), with vnetd hosts:
recorded packets are never taken again after either end restarts, the restart costs
one challenge round trip, two hosts sharing an address and a key never share a nonce,
and the format before sessions is counted `old-seal`.  Needs root.

The underlay is recorded on the switch; the test holds the vnet key, so it opens the
recorded frames to know which inner frames must never reach a VM again."""
from __future__ import annotations

import signal
import time

import pytest
from conftest import needs_root
from netns.test_security import secure, secure_vnet

from lab.capture import DEADLINE, Capture, ipv4_payloads
from lab.procs import script_argv
from lab.traffic import send_datagrams
from lab.vnethost import VnetHost
from vnet.model import keys
from vnet.wire import seal

pytestmark = [needs_root, pytest.mark.root]

SEALED_FRAME = bytes([0, seal.MSG_SEALED, seal.TYPE_FRAME])


def sealed_frames(frames: list[bytes], src: str, dst: str) -> list[bytes]:
    """The sealed frame messages (type 2) `src` sent `dst` by UDP, as captured."""
    return [p for s, d, p in ipv4_payloads(frames) if s == src and d == dst and p[:3] == SEALED_FRAME]


def inner(key: keys.Key, level: str, msg: bytes) -> bytes:
    """The Ethernet frame a sealed frame message carries (checked with the key)."""
    cipher = seal.aead(key.secret, msg[seal.SESSION_AT:seal.COUNTER_AT])
    return bytes(seal.unseal(cipher, seal.LEVELS[level], memoryview(msg)))


def delta(before: dict, after: dict, name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def wait_total(host: VnetHost, before: dict, names: tuple[str, ...], n: int) -> dict:
    """Wait until the counters `names` together grew by at least n (which of them a
    packet lands in depends on when the challenge's answer came); the counters then."""
    deadline = time.monotonic() + DEADLINE
    while True:
        now = host.counters()
        if sum(delta(before, now, k) for k in names) >= n:
            return now
        assert time.monotonic() < deadline, f"{names} did not grow by {n}: {before} -> {now}"
        time.sleep(0.1)


def recorded_pings(lab, cap: Capture, a, b, src: VnetHost, dst: VnetHost, n: int = 4) -> list[bytes]:
    """Ping b from a and return at least n of the sealed frames src sent dst for it."""
    assert lab.ping(a, b.ip, count=n, interval=0.2).received == n
    return sealed_frames(cap.wait_for(lambda fs: len(sealed_frames(fs, src.ip, dst.ip)) >= n,
                                      f"{n} sealed frames {src.ip} -> {dst.ip}"), src.ip, dst.ip)


def pair(lab, make_hosts, tmp_path, level: str):
    """Two vnetd hosts and a host without the key on one switch; VMs a (host 0) and b
    (host 1) on secure vnet 97, pinging."""
    sw = lab.switch("sw")
    hosts = make_hosts(2, switch=sw)
    if hosts[0].datapath != "vnetd":
        pytest.skip("restarts a vnetd")
    attacker = lab.host("x", sw, "10.0.0.66/24")
    key = secure(hosts, tmp_path, level)
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    # Quiet VMs: their IPv6 (router solicitations, MLD reports) would be sealed
    # messages of their host's session too, counted with the attacker's replays.
    for vm in (a, b):
        lab.sysctl(vm, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.eth0.disable_ipv6": "1"})
    lab.wait_ping(a, b.ip, timeout=20)
    return hosts, attacker, key, a, b


@pytest.mark.parametrize("level", ["auth", "conf"])
def test_packets_recorded_before_a_receiver_restart_are_never_taken(lab, make_hosts, tmp_path, level):
    hosts, attacker, key, a, b = pair(lab, make_hosts, tmp_path, level)
    h0, h1 = hosts
    for how in (signal.SIGTERM, signal.SIGKILL):  # a clean stop, and a power loss
        with Capture(lab, lab.nodes["sw"]) as cap:
            recorded = recorded_pings(lab, cap, a, b, h0, h1)
        old = {inner(key, level, p) for p in recorded}
        h0_before = h0.counters()
        h1.kill(how)
        h1.start()
        with Capture(lab, b, bridge="") as at_b:
            before = h1.counters()  # a restarted vnetd counts from zero
            send_datagrams(lab, attacker, h1.ip, recorded)
            after = wait_total(h1, before, ("drop:unconfirmed", "drop:replay"), len(recorded))
            # Pings resume once host 0 answered host 1's challenge: one round trip.
            lab.wait_ping(a, b.ip, timeout=20)
            send_datagrams(lab, attacker, h1.ip, recorded)  # again, with the session confirmed
            again = h1.wait_counters(after, {"drop:replay": len(recorded)})
        assert not old & set(at_b.frames), f"a recorded frame reached VM b after {how!r}"
        # Unconfirmed while host 1 waited for host 0's answer, replay after it (host 0's
        # own packets may have drawn the challenge already): never taken.
        assert delta(before, after, "drop:unconfirmed") + delta(before, after, "drop:replay") == len(recorded)
        assert delta(after, again, "drop:replay") == len(recorded) and delta(after, again, "drop:unconfirmed") == 0
        assert again["challenges-sent"] >= 1 and again["sessions-confirmed"] >= 1, again
        assert h0.wait_counters(h0_before, {"answers-sent": 1})["answers-sent"] >= 1
        assert again.get("drop:bad-tag", 0) == 0 and again.get("drop:bad-answer", 0) == 0, again


@pytest.mark.parametrize("level", ["auth", "conf"])
def test_a_restarted_senders_old_session_is_refused(lab, make_hosts, tmp_path, level):
    hosts, attacker, key, a, b = pair(lab, make_hosts, tmp_path, level)
    h0, h1 = hosts
    with Capture(lab, lab.nodes["sw"]) as cap:
        recorded = recorded_pings(lab, cap, a, b, h0, h1)
    old = {inner(key, level, p) for p in recorded}
    before = h1.counters()
    h0.kill()
    h0.start()
    lab.wait_ping(a, b.ip, timeout=20)  # host 1 confirmed host 0's new session
    confirmed = h1.wait_counters(before, {"challenges-sent": 1, "sessions-confirmed": 1})
    assert h0.counters()["answers-sent"] >= 1  # host 1's packets were unconfirmed at host 0 too
    with Capture(lab, b, bridge="") as at_b:
        send_datagrams(lab, attacker, h1.ip, recorded)
        after = h1.wait_counters(confirmed, {"drop:unconfirmed": len(recorded)})
        assert lab.ping(a, b.ip, count=2, interval=0.2).received == 2
    assert delta(confirmed, after, "drop:unconfirmed") == len(recorded), (confirmed, after)
    assert delta(confirmed, after, "drop:replay") == 0 and not old & set(at_b.frames)


def test_hosts_sharing_an_address_and_a_key_never_share_a_nonce(lab, tmp_path):
    """Two sites behind NAT, or a copied lab: 10.0.0.1 twice with one key, each on its
    own underlay with its own peer 10.0.0.2."""
    path = tmp_path / "97-1.key"
    key = keys.write_key(path, 1)
    pairs = []
    for n in (1, 2):
        sw = lab.switch(f"sw{n}")
        hs = [VnetHost(lab, lab.host(f"s{n}h{i}", sw, f"10.0.0.{i}/24"), tmp_path / f"s{n}h{i}") for i in (1, 2)]
        for h in hs:
            h.start()
        secure_vnet(hs, key, "conf")
        a = lab.vm(f"a{n}", hs[0].host, "vnet97", "10.97.0.1/24")
        b = lab.vm(f"b{n}", hs[1].host, "vnet97", "10.97.0.2/24")
        pairs.append((sw, a, b))
    nonces = []
    for sw, a, b in pairs:
        with Capture(lab, sw) as cap:
            lab.wait_ping(a, b.ip, timeout=20)
            assert lab.ping(a, b.ip, count=3, interval=0.2).received == 3
        sent = [p for s, _, p in ipv4_payloads(cap.frames) if s == "10.0.0.1" and p[:2] == SEALED_FRAME[:2]]
        assert len(sent) >= 3, sent
        nonces.append({bytes(p[seal.NONCE_AT:seal.HEADER_LEN]) for p in sent})
    first, second = nonces
    assert not first & second, "two hosts sealed with one (session, counter) under one key"
    assert not {n[:seal.SESSION_LEN] for n in first} & {n[:seal.SESSION_LEN] for n in second}


#: Send each hex payload as an IP protocol 97 packet to argv[1] (the raw socket
#: writes the IP header).
RAW_ETHERIP = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 97)
for p in sys.argv[2:]:
    s.sendto(bytes.fromhex(p), (sys.argv[1], 0))
"""


def test_the_format_before_sessions_counts_old_seal(lab, make_hosts, tmp_path):
    sw = lab.switch("sw")
    hosts = make_hosts(1, switch=sw)
    sender = lab.host("x", sw, "10.0.0.66/24")
    secure(hosts, tmp_path, "conf")
    (h,) = hosts
    # A message id 4 header (38 bytes: type, level, vnet 97, key 1, sender, sequence)
    # with a body and a tag, as a host before sessions sealed it.
    old = bytes([0, seal.MSG_OLD_SEALED, seal.TYPE_FRAME, seal.CONF]) + bytes(15) + b"\x97\x01" + bytes(5) \
        + bytes([10, 0, 0, 66]) + (1 << 32).to_bytes(8, "big") + bytes(60) + bytes(16)
    before = h.counters()
    send_datagrams(lab, sender, h.ip, [old, old])
    r = lab.run(sender, script_argv(RAW_ETHERIP, h.ip, old.hex()))
    assert r.returncode == 0, r.stderr
    after = h.wait_counters(before, {"drop:old-seal": 3})
    assert delta(before, after, "drop:old-seal") == 3, (before, after)
    assert delta(before, after, "challenges-sent") == 0 and delta(before, after, "drop:bad-message-id") == 0
