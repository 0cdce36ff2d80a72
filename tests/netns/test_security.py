"""Secure vnets across simulated hosts (doc/security.md): what gets through, what the
underlay sees, what is dropped, and key rotation under traffic.  Needs root.

The tests drive hosts through `vn` and read `vn stats`, so they run unchanged with the
kernel module as the datapath inside the test guest (tests/kernel/in_guest)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import needs_root

from lab.capture import Capture, ipv4_payloads
from lab.lab import parse_ping
from lab.traffic import send_datagrams, send_udp, transfer
from lab.vnethost import run_in_namespace
from vnet.model import keys
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire
from vnet.wire import seal

pytestmark = [needs_root, pytest.mark.root]

VID = VnetId.parse("97").packed
SECRET_TEXT = b"vnet-known-payload-0123456789"
#: The session of the messages a test seals itself (a key holder that is no vnetd).
TEST_SESSION = bytes(range(0x50, 0x60))


def secure_vnet(hosts, key: keys.Key, level: str, *extra: str) -> None:
    """Vnet 97 at `level` on every host, all holding `key`."""
    for h in hosts:
        h.vn("vnet-create", "-s", level, "-k", key.path, *extra, "97")


def secure(hosts, tmp_path, level: str, *extra: str) -> keys.Key:
    """secure_vnet with one key made by `vn key-gen`."""
    path = tmp_path / "97-1.key"
    hosts[0].vn("key-gen", str(path))
    key = keys.load_key(path)
    secure_vnet(hosts, key, level, *extra)
    return key


def sealed(key: keys.Key, level: int, msg_type: int, body: bytes, sender: str, seq: int,
           vid: VnetId = VnetId.parse("97"), key_id: int | None = None, session: bytes = TEST_SESSION) -> bytes:
    """A sealed message as a host holding `key` would send it in `session` with counter
    `seq` (vnet/wire/seal.py)."""
    parts = seal.seal(seal.aead(key.secret, session), level, msg_type, vid.packed,
                      key.id if key_id is None else key_id, socket.inet_aton(sender), session, seq, body)
    return b"".join(parts)


def _confirm(host: str, secret: bytes, key_id: int, level: int, vid: bytes, me: str, session: bytes,
             counter: int) -> int:
    """In a key holder's namespace: make `host` confirm our session (doc/security.md,
    "Sessions").  A sealed frame in the session draws a challenge to our port 1798,
    which is answered in the same session; prints the next free counter."""
    cipher = seal.aead(secret, session)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((me, 1798))
    s.settimeout(1)
    frame = bytes.fromhex("ffffffffffffaa00000000e188b5") + bytes(50)
    for _ in range(30):  # a lost challenge is sent again after a second
        counter += 1
        s.sendto(b"".join(seal.seal(cipher, level, seal.TYPE_FRAME, vid, key_id, socket.inet_aton(me), session,
                                    counter, frame)), (host, 1798))
        try:
            got, src = s.recvfrom(2048)
        except socket.timeout:
            continue
        h = seal.HEADER.unpack_from(got)
        if src[0] != host or h[1] != seal.TYPE_CHALLENGE:
            continue
        value = seal.unseal(seal.aead(secret, h[6]), level, memoryview(got))
        counter += 1
        s.sendto(b"".join(seal.seal(cipher, level, seal.TYPE_ANSWER, vid, key_id, socket.inet_aton(me), session,
                                    counter, bytes(value))), (host, 1798))
        print(counter + 1)
        return 0
    print("no challenge came from " + host, file=sys.stderr)
    return 1


def confirm_session(lab, node, host, key: keys.Key, level: int, me: str, vid: VnetId = VnetId.parse("97"),
                    session: bytes = TEST_SESSION, counter: int = 0) -> int:
    """From `node` (which has address `me`, port 1798 free), have `host` confirm
    `session` as me's; returns the next counter to seal with.  A test that sends as a
    key holder does this first, as a real host would: host drops anything before.  A
    fork of this process does it (no interpreter to start: seconds in the test guest)."""
    before = host.counters()
    code, out, err = run_in_namespace(lab.ns_of(node), _confirm, host.ip, key.secret, key.id, level,
                                      vid.packed, me, session, counter, timeout=60)
    assert code == 0, err
    host.wait_counters(before, {"sessions-confirmed": 1})
    return int(out)


def drops(host) -> dict[str, int]:
    return {k[5:]: v for k, v in host.counters().items() if k.startswith("drop:")}


@pytest.mark.parametrize("level", ["conf", "auth"])
def test_secure_vnet_carries_traffic_and_conf_hides_it(lab, make_hosts, tmp_path, level):
    hosts = make_hosts(2)
    key = secure(hosts, tmp_path, level)
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip)
    with Capture(lab, lab.nodes["sw"]) as cap:
        r = lab.ping(a, b.ip, count=4, interval=0.2)
        assert r.received == 4 and r.duplicates == 0, r.output
        send_udp(lab, a, b.ip, SECRET_TEXT * 20)
        send_udp(lab, b, a.ip, SECRET_TEXT)
        # 8 pings and replies, 6 datagrams: each crosses the underlay once.
        frames = cap.wait_for(lambda fs: len(ipv4_payloads(fs)) >= 14, "14 vnet messages")
    found = [p for _, _, p in ipv4_payloads(frames)]
    assert len(found) >= 10
    # Every vnet packet on the underlay is a sealed message of vnet 97 with key 1.
    for p in found:
        assert p[:4] == bytes([0, 5, p[2], seal.LEVELS[level]]) and p[4:20] == VID and p[20] == 1, p.hex()
    seen = any(SECRET_TEXT in f for f in frames)
    assert seen == (level == "auth"), "conf must hide the payload; auth sends it in the clear"
    # The format is the documented one: the captured packets open with the key.
    frames_sealed = [p for p in found if p[2] == seal.TYPE_FRAME]
    for p in frames_sealed[:5]:
        body = seal.unseal(seal.aead(key.secret, p[seal.SESSION_AT:seal.COUNTER_AT]), seal.LEVELS[level],
                           memoryview(p))
        assert len(body) >= 14
    # Larger transfers: super-frames are sealed whole.
    transfer(lab, a, b, "tcp", 4 << 20)
    transfer(lab, b, a, "udp", 100)
    listing = hosts[0].vn_json("vnets")[0]
    assert listing["security"] == level and listing["keys"] == [1] and listing["header"] == 108


def test_secure_raw_etherip_vnet(lab, make_hosts, tmp_path):
    hosts = make_hosts(2)
    secure(hosts, tmp_path, "conf", "-e", "etherip")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip)
    r = lab.ping(a, b.ip, count=3)
    assert r.received == 3 and r.duplicates == 0, r.output
    listing = hosts[1].vn_json("vnets")[0]
    assert listing["header"] == 100 and hosts[1].counters()["etherip-received"] >= 3
    transfer(lab, a, b, "tcp", 1 << 20)  # MTU 1400 fits the underlay with DF set
    if hosts[1].datapath == "vnetd":  # a restarted vnetd reads its keys again, and its
        hosts[1].kill()               # new session is confirmed, not taken for a replay
        hosts[1].start()
        lab.wait_ping(a, b.ip)
        assert drops(hosts[0]).get("replay", 0) == 0


def test_tampered_replayed_forged_and_unprotected_are_dropped(lab, make_hosts, tmp_path):
    sw = lab.switch("sw")
    hosts = make_hosts(2, switch=sw)
    attacker = lab.host("x", sw, "10.0.0.66/24")
    key = secure(hosts, tmp_path, "conf")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip)
    def recorded_of(frames: list[bytes]) -> list[bytes]:
        return [p for src, dst, p in ipv4_payloads(frames)
                if src == hosts[0].ip and dst == hosts[1].ip and p[:2] == b"\x00\x05"]
    with Capture(lab, lab.nodes["sw"]) as cap:
        assert lab.ping(a, b.ip, count=4, interval=0.2).received == 4
        recorded = recorded_of(cap.wait_for(lambda fs: len(recorded_of(fs)) >= 4, "4 sealed requests"))
    assert len(recorded) >= 3
    h1 = hosts[1]
    before = drops(h1)
    mac_a = bytes.fromhex(a.mac.replace(":", ""))
    frame = bytes.fromhex(b.mac.replace(":", "")) + bytes.fromhex("aa0000000066") + b"\x08\x00" + SECRET_TEXT
    forged_announce = wire.pack_varp(wire.VARP_ANNOUNCE, VID, mac_a, attacker.ip)
    wrong = keys.Key(key.id, os.urandom(32))
    # A recorded packet changed: a body bit, and a fresh counter so the replay window
    # does not stop it before the tag is checked.
    tampered = bytearray(recorded[1])
    tampered[60] ^= 0x80
    tampered[seal.COUNTER_AT:seal.HEADER_LEN] = (1 << 62).to_bytes(8, "big")

    seq = time.time_ns()
    injected = {
        "replay": [recorded[0], recorded[0], recorded[2]],
        "bad-tag": [bytes(tampered), sealed(wrong, seal.CONF, seal.TYPE_FRAME, frame, attacker.ip, seq),
                    sealed(wrong, seal.CONF, seal.TYPE_VARP, forged_announce, attacker.ip, seq)],
        "unknown-key": [sealed(wrong, seal.CONF, seal.TYPE_FRAME, frame, attacker.ip, seq, key_id=9)],
        "security-mismatch": [sealed(wrong, seal.AUTH, seal.TYPE_FRAME, frame, attacker.ip, seq)],
        "unprotected": [wire.vudp_prefix(VID) + frame, forged_announce],
    }
    counted = h1.counters()
    send_datagrams(lab, attacker, h1.ip, [p for ps in injected.values() for p in ps])
    h1.wait_counters(counted, {f"drop:{reason}": len(packets) for reason, packets in injected.items()})
    after = drops(h1)
    for reason, packets in injected.items():
        assert after.get(reason, 0) - before.get(reason, 0) == len(packets), (reason, before, after)
    # The forged announces moved nothing: host 1 still sends a's frames to host 0.
    varp = h1.varp_table()
    assert varp.get(a.mac) == hosts[0].ip, varp
    r = lab.ping(b, a.ip, count=3)
    assert r.received == 3 and r.duplicates == 0, r.output


def test_plain_vnet_drops_sealed_messages(lab, make_hosts, tmp_path):
    """A (security none) host on the same id takes nothing from secure ones, and back."""
    hosts = make_hosts(2)
    path = tmp_path / "k.key"
    hosts[0].vn("key-gen", str(path))
    hosts[0].vn("vnet-create", "-s", "conf", "-k", str(path), "97")
    hosts[1].vn("vnet-create", "97")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    assert lab.ping(a, b.ip, count=2, timeout=3).received == 0
    assert drops(hosts[1]).get("security-mismatch", 0) >= 1
    assert drops(hosts[0]).get("unprotected", 0) >= 1


def test_key_rotation_while_pinging_loses_at_most_one_ping(lab, make_hosts, tmp_path):
    hosts = make_hosts(2)
    secure(hosts, tmp_path, "conf")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip)
    new = tmp_path / "97-2.key"
    hosts[0].vn("key-gen", "--id", "2", str(new))
    pinger = lab.popen(a, ["ping", "-n", "-i", "0.1", "-W", "1", "-w", "30", "-c", "60", b.ip],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    for step in (("key-add", "97", str(new)), ("key-use", "97", "2"), ("key-del", "97", "1")):
        for h in hosts:  # host by host, as an operator would
            h.vn(*step)
            time.sleep(0.3)
    out, _ = pinger.communicate(timeout=40)
    r = parse_ping(out)
    assert r.transmitted == 60 and r.transmitted - r.received <= 1, out
    for h in hosts:
        assert h.vn_json("vnets")[0]["keys"] == [2]
        assert h.vn_json("vnet-list", "97")[0]["key_files"] == [str(new)]
    sent_with_2 = drops(hosts[1])
    assert sent_with_2.get("unknown-key", 0) == 0 and sent_with_2.get("bad-tag", 0) == 0


def test_key_errors_and_secrets_stay_secret(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    r = h.vn("vnet-create", "-s", "conf", "97", check=False)
    default = h.state_dir / "keys" / "97.key"
    assert r.returncode == 1 and f"vn key-gen {default}" in r.stderr, r.stderr
    loose = tmp_path / "loose.key"
    h.vn("key-gen", str(loose))
    os.chmod(loose, 0o644)
    r = h.vn("vnet-create", "-s", "auth", "-k", str(loose), "97", check=False)
    assert r.returncode == 1 and "mode 0644" in r.stderr and "chmod 600" in r.stderr, r.stderr
    assert h.vn("vnet-list").stdout == ""  # nothing half-made was kept
    r = h.vn("vnet-create", "-k", str(loose), "97", check=False)
    assert r.returncode == 1 and "uses no key" in r.stderr
    # The state directory's key, found without (key-file ...).
    h.vn("key-gen", "--id", "5", str(default))
    h.vn("vnet-create", "-s", "conf", "97")
    assert h.vn_json("vnets")[0]["keys"] == [5]
    other = tmp_path / "other.key"
    h.vn("key-gen", "--id", "5", str(other))
    for args, message in ((("key-add", "97", str(other)), "already holds a key with id 5"),
                          (("key-del", "97", "5"), "is the send key"),
                          (("key-use", "97", "6"), "holds no key with id 6"),
                          (("key-add", "98", str(other)), "vnet not found")):
        r = h.vn(*args, check=False)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
    secret = keys.load_key(default).secret.hex()
    outputs = [h.vn(*c).stdout for c in (("vnets",), ("vnet-list", "-l"), ("stats",), ("vnets", "-a"))]
    outputs += [(h.state_dir / "state.sxp").read_text()]
    if h.log.exists():
        outputs.append(h.log.read_text())
    for text in outputs:
        assert secret not in text and secret[:16] not in text
