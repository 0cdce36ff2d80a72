"""Secure vnets with the kernel module as datapath (doc/security.md): traffic through
sealed messages, what the underlay sees, the module's bytes checked against the Python
reference (vnet/wire/seal.py), forged packets dropped and counted by reason, key rotation
under traffic, a mixed module/vnetd vnet, and secrets kept out of listings and the
kernel log.  Restarts and sessions: test_kmod_sessions.py."""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from netns.test_network_vnet import hook
from netns.test_security import secure_vnet
from pyroute2 import NetNS

from lab.capture import Capture, ipv4_payloads
from lab.lab import parse_ping
from lab.traffic import send_datagrams, send_udp, transfer
from lab.vnethost import run_in_namespace
from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import loader
from vnet.errors import DatapathError
from vnet.model import keys
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire
from vnet.wire import seal

VNET_KO = Path(os.environ.get("VNET_KO") or loader.default_module_path())
VID = VnetId.parse("97")
MARK = b"vnet-kmod-known-payload-7f3a9c"


# ---- helpers --------------------------------------------------------------------------

def make_key(tmp_path, key_id: int = 1, name: str | None = None) -> keys.Key:
    return keys.write_key(tmp_path / (name or f"97-{key_id}.key"), key_id)


def two_vms(lab, hosts):
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    return a, b


class Header(NamedTuple):
    id: int
    type: int
    level: int
    vnet: bytes
    key_id: int
    sender: bytes
    session: bytes
    counter: int


def header(p: bytes) -> Header:
    return Header(*seal.HEADER.unpack_from(p))


def sealed(key: keys.Key, level: int, msg_type: int, body: bytes, sender: str, counter: int,
           session: bytes, vid: VnetId = VID, key_id: int | None = None) -> bytes:
    """A sealed message as a host holding `key` would send it in `session`."""
    return b"".join(seal.seal(seal.aead(key.secret, session), level, msg_type, vid.packed,
                              key.id if key_id is None else key_id, socket.inet_aton(sender),
                              session, counter, body))


def delta(before: dict, after: dict, name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def in_ns(host, func, *args):
    code, out, err = run_in_namespace(host.host.ns, func, *args)
    assert code == 0, err
    return out


# ---- traffic ---------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["conf", "auth"])
def test_secure_vnet_carries_ping_tcp_and_udp(lab, make_hosts, tmp_path, level):
    hosts = make_hosts(2)
    key = make_key(tmp_path)
    secure_vnet(hosts, key, level)
    a, b = two_vms(lab, hosts)
    for src, dst in ((a, b), (b, a)):
        r = lab.ping(src, dst.ip, count=4)
        assert r.received == 4 and r.duplicates == 0, r.output
    transfer(lab, a, b, "tcp", 4 << 20)  # super-frames sealed whole
    transfer(lab, b, a, "tcp", 1 << 20)
    transfer(lab, a, b, "udp", 100)
    listed = hosts[0].vn_json("vnets")[0]
    assert listed["security"] == level and listed["keys"] == [1], listed
    assert int(listed["header"]) == 108
    assert listed["tx_bytes"] / listed["tx_packets"] > 1514, "no super-frames were sealed"
    drops = {k: v for k, v in hosts[1].counters().items() if k.startswith("drop:")}
    for reason in ("bad-tag", "replay", "unknown-key", "bad-seal", "security-mismatch", "unprotected"):
        assert f"drop:{reason}" not in drops, drops


def test_secure_raw_etherip_vnet(lab, make_hosts, tmp_path):
    hosts = make_hosts(2)
    key = make_key(tmp_path)
    secure_vnet(hosts, key, "conf", "-e", "etherip")
    a, b = two_vms(lab, hosts)
    listed = hosts[0].vn_json("vnets")[0]
    assert int(listed["header"]) == 100
    with NetNS(hosts[0].host.ns, flags=0) as ipr:
        assert ipr.get_links(ifname=listed["vnetif"])[0].get_attr("IFLA_MTU") == 1400
    with Capture(lab, lab.nodes["sw"]) as cap:
        r = lab.ping(a, b.ip, count=4, interval=0.2)
        assert r.received == 4, r.output
        # Full-size frames fit: DF is set on raw EtherIP.
        r = lab.run(a, ["ping", "-n", "-c", "2", "-M", "do", "-s", str(1400 - 28), "-W", "2", b.ip])
        assert "2 received" in r.stdout, r.stdout
        frames = cap.wait_for(lambda fs: len(ipv4_payloads(fs, proto=97)) >= 12, "12 raw EtherIP messages")
    raw = ipv4_payloads(frames, proto=97)
    assert raw and all(p[:2] == b"\x00\x05" and p[2] == 2 and p[3] == 2 for _, _, p in raw)
    transfer(lab, a, b, "tcp", 1 << 20)


# ---- the underlay, and the format against the reference ---------------------------

@pytest.mark.parametrize("level", ["conf", "auth"])
def test_underlay_sees_sealed_messages_only(lab, make_hosts, tmp_path, level):
    hosts = make_hosts(2)
    key = make_key(tmp_path)
    secure_vnet(hosts, key, level)
    a, b = two_vms(lab, hosts)
    def messages(frames: list[bytes]) -> list[tuple[str, str, bytes]]:
        return [(s, d, p) for s, d, p in ipv4_payloads(frames) if s in (hosts[0].ip, hosts[1].ip)]
    with Capture(lab, lab.nodes["sw"]) as cap:
        send_udp(lab, a, b.ip, MARK * 4)
        r = lab.ping(a, b.ip, count=3, interval=0.2)
        assert r.received == 3, r.output
        # 3 datagrams, 3 requests, 3 replies.
        frames = cap.wait_for(lambda fs: len(messages(fs)) >= 9, "9 messages between the hosts")
    msgs = messages(frames)
    assert len(msgs) >= 9, msgs
    # Nothing on the wire is a plain VUDP frame or VARP message: all are sealed.
    assert all(p[:2] == b"\x00\x05" for _, _, p in msgs), [p[:4].hex() for _, _, p in msgs]
    if level == "conf":
        assert not any(MARK in f for f in frames), "a VM's payload crossed the underlay in the clear"
    else:
        assert sum(MARK in p for _, _, p in msgs) >= 3
    # Each message opens with the reference implementation, the shared key and the
    # header's session.
    found = 0
    for src, _dst, p in msgs:
        h = header(p)
        mtype, mlevel = h.type, h.level
        assert (h.id, mlevel, h.vnet, h.key_id) == (5, seal.LEVELS[level], VID.packed, key.id)
        assert socket.inet_ntoa(h.sender) == src
        body = bytes(seal.unseal(seal.aead(key.secret, h.session), mlevel, p))
        assert len(body) == len(p) - seal.OVERHEAD
        if mtype == 2 and MARK in body:
            found += 1
            # The datagram to b, or b's ICMP error quoting it back to a.
            assert body[0:6] in {bytes.fromhex(v.mac.replace(":", "")) for v in (a, b)}
        elif mtype == 1:
            assert len(body) == wire.VARP_LEN + wire.VARP_EXT_LEN and body[4:20] == VID.packed  # announce + extension
            assert body[wire.VARP_LEN:] == wire.VARP_EXT_SUPER
    assert found >= 3
    # A byte changed anywhere is refused by the reference too.
    p = bytearray(msgs[0][2])
    p[-20] ^= 1
    with pytest.raises(seal.InvalidTag):
        seal.unseal(seal.aead(key.secret, header(p).session), seal.LEVELS[level], bytes(p))
    # One session and one counter per host: counters only go up, from 1 (no clock).
    mine = [header(p) for s, _, p in msgs if s == hosts[0].ip]
    assert len({h.session for h in mine}) == 1
    seqs = [h.counter for h in mine]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[-1] < 10**6, "the counter did not start at 1"


# ---- forged packets ----------------------------------------------------------------

FORGED_MAC = bytes.fromhex("aa0000000066")


def forged(frames: list[bytes]) -> int:
    """How many of the frames a VM received are the test's forged one."""
    return sum(f[6:12] == FORGED_MAC or f[12:14] == b"\x88\xb5" for f in frames)


def test_forged_packets_are_dropped_and_counted(lab, make_hosts, tmp_path):
    sw = lab.switch("sw")
    hosts = make_hosts(2, switch=sw)
    attacker = lab.host("x", sw, "10.0.0.66/24")
    key = make_key(tmp_path)
    secure_vnet(hosts, key, "conf")
    a, b = two_vms(lab, hosts)
    def unicast(frames: list[bytes]) -> list[bytes]:
        return [p for s, d, p in ipv4_payloads(frames) if s == hosts[0].ip and d == hosts[1].ip
                and p[2] == 2]
    with Capture(lab, lab.nodes["sw"]) as cap:
        assert lab.ping(a, b.ip, count=3, interval=0.2).received == 3
        real = unicast(cap.wait_for(lambda fs: len(unicast(fs)) >= 3, "3 sealed requests"))
    assert real, "no sealed unicast frame captured"
    # A frame to VM b that a sniffer there would recognise.
    frame = bytes.fromhex(b.mac.replace(":", "")) + FORGED_MAC + b"\x88\xb5" + bytes(50)
    other = keys.Key(1, bytes(range(32)))
    ip0 = hosts[0].ip
    # In h0's confirmed session, above anything it sent, so fresh (a key holder could).
    session0 = header(real[-1]).session
    seq = max(header(p).counter for p in real) + 1000
    stranger = seal.new_session()
    # A byte flipped in a captured message: its number was seen, so it is a replay
    # (checked before the tag); in fresh ones (body, reserved header byte): a bad tag.
    tampered = bytearray(real[-1])
    tampered[60] ^= 0x80
    fresh_body = bytearray(sealed(key, 2, 2, frame, ip0, seq - 8, session0))
    fresh_body[70] ^= 1
    fresh_header = bytearray(sealed(key, 2, 2, frame, ip0, seq - 9, session0))
    fresh_header[21] ^= 1
    varp_plain = wire.pack_varp(wire.VARP_ANNOUNCE, VID.packed, bytes.fromhex("aa0000000066"), ip0)
    bad = {
        "unprotected": [wire.vudp_prefix(VID.packed) + frame, varp_plain],
        "short": [b"\x00\x05\x02\x02" + bytes(30), sealed(key, 2, 2, frame, ip0, seq - 10, session0)[:65]],
        "old-seal": [b"\x00\x04\x02\x02" + bytes(90)],
        "unknown-vnet": [sealed(key, 2, 2, frame, ip0, seq - 1, session0, vid=VnetId.parse("1234"))],
        "security-mismatch": [sealed(key, 1, 2, frame, ip0, seq - 2, session0)],
        "unknown-key": [sealed(key, 2, 2, frame, ip0, seq - 3, session0, key_id=9)],
        "replay": [real[0], real[-1], bytes(tampered)],
        "bad-tag": [bytes(fresh_body), bytes(fresh_header), sealed(other, 2, 2, frame, ip0, seq - 4, session0)],
        "bad-seal": [sealed(key, 2, 2, frame[:13], ip0, seq - 5, session0),
                     sealed(key, 2, 1, wire.pack_varp(wire.VARP_ANNOUNCE, VnetId.parse("98").packed,
                                                      bytes.fromhex("aa0000000066"), ip0), ip0, seq - 6, session0),
                     sealed(key, 2, seal.TYPE_CHALLENGE, bytes(15), ip0, seq - 11, session0),
                     sealed(key, 2, 9, bytes(16), ip0, seq - 12, session0)],
        # An answer to no challenge: h1 has none pending for h0.
        "bad-answer": [sealed(key, 2, seal.TYPE_ANSWER, bytes(16), ip0, seq - 13, session0)],
        # A key holder's session h1 never confirmed (its challenge goes unanswered).
        "unconfirmed": [sealed(key, 2, 2, frame, "10.0.0.77", 1, stranger)],
    }
    with Capture(lab, b, bridge="") as sniff:
        before = hosts[1].counters()
        send_datagrams(lab, attacker, hosts[1].ip, [p for ps in bad.values() for p in ps])
        after = hosts[1].wait_counters(before, {"drop:" + r: len(ps) for r, ps in bad.items()})
        for reason, packets in bad.items():
            assert delta(before, after, "drop:" + reason) == len(packets), (reason, before, after)
        assert delta(before, after, "challenges-sent") == 1, (before, after)
    assert forged(sniff.frames) == 0, "a forged frame reached the VM"
    varp = hosts[1].varp_table()
    assert "aa:00:00:00:00:66" not in varp, varp
    # The same frame, sealed with the key in h0's session, is delivered once, and its
    # source MAC is learned at the header's sender, not at the IP source (the attacker).
    with Capture(lab, b, bridge="") as sniff:
        good = sealed(key, 2, 2, frame, ip0, seq, session0)
        send_datagrams(lab, attacker, hosts[1].ip, [good, good])
        hosts[1].wait_counters(after, {"drop:replay": 1})  # the copy: handled after the first
        sniff.wait_for(lambda fs: forged(fs) >= 1, "the sealed frame at the VM")
    assert forged(sniff.frames) == 1
    varp = hosts[1].varp_table()
    assert varp.get("aa:00:00:00:00:66") == ip0, varp
    assert delta(after, hosts[1].counters(), "drop:replay") == 1
    r = lab.ping(a, b.ip, count=3)
    assert r.received == 3, r.output


def test_vfwd_through_peers_carries_sealed_messages(lab, make_hosts, tmp_path):
    sw1, sw2 = lab.switch("s1"), lab.switch("s2")
    lab.router("r", [(sw1, "10.0.1.254/24"), (sw2, "10.0.2.254/24")])
    left = make_hosts(2, switch=sw1, subnet="10.0.1", gateway="10.0.1.254")
    right = make_hosts(1, switch=sw2, subnet="10.0.2", gateway="10.0.2.254")
    hosts = left + right
    key = make_key(tmp_path)
    secure_vnet(hosts, key, "conf")
    left[0].vn("peer-add", right[0].ip)
    right[0].vn("peer-add", left[0].ip)
    vms = [lab.vm(f"m{i}", h.host, "vnet97", f"10.97.0.{i + 1}/24") for i, h in enumerate(hosts)]
    lab.wait_ping(vms[1], vms[2].ip, timeout=20)
    for src, dst in [(vms[1], vms[2]), (vms[2], vms[0]), (vms[0], vms[2]), (vms[2], vms[1])]:
        r = lab.ping(src, dst.ip, count=3)
        assert r.received == 3 and r.duplicates == 0, r.output
    assert right[0].counters().get("forwards-received", 0) > 0
    # The hosts behind the forwarder learned VM m1 at its own host, from the sealed
    # header's sender, though the packets came as VFWD from the peer.
    varp = right[0].varp_table()
    assert varp[vms[1].mac] == left[1].ip, varp


# ---- keys --------------------------------------------------------------------------

def test_rotation_under_traffic_loses_at_most_one_ping(lab, make_hosts, tmp_path):
    hosts = make_hosts(2)
    k1 = make_key(tmp_path, 1)
    secure_vnet(hosts, k1, "conf")
    a, b = two_vms(lab, hosts)
    k2 = make_key(tmp_path, 2)
    pinger = lab.popen(a, ["ping", "-n", "-i", "0.05", "-W", "1", "-w", "8", b.ip],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    for step in (("key-add", "97", k2.path), ("key-use", "97", "2"), ("key-del", "97", "1")):
        for h in hosts:  # host by host, as an operator would
            h.vn(*step)
        time.sleep(0.5)
    out, _ = pinger.communicate(timeout=30)
    r = parse_ping(out)
    assert r.transmitted > 50 and r.transmitted - r.received <= 1, out
    for h in hosts:
        assert h.vn_json("vnets")[0]["keys"] == [2]
    assert lab.ping(a, b.ip, count=2).received == 2


def test_key_errors(lab, make_hosts, tmp_path):
    h = make_hosts(1)[0]
    key = make_key(tmp_path)
    h.vn("vnet-create", "-s", "auth", "-k", key.path, "97")
    h.vn("vnet-create", "98")
    in_ns(h, _netlink_errors, key.secret.hex())
    # A key file others can read is refused, naming the file.
    loose = make_key(tmp_path, 3)
    (tmp_path / "97-3.key").chmod(0o644)
    r = h.vn("vnet-create", "-s", "conf", "-k", loose.path, "99", check=False)
    assert r.returncode != 0 and loose.path in r.stderr, r.stderr


def _netlink_errors(secret_hex: str) -> int:
    secret = bytes.fromhex(secret_hex)
    vid97, vid98, vid99 = (VnetId.parse(v).packed for v in ("97", "98", "99"))
    key = kmod.keys_attr([keys.Key(1, secret)])
    two = kmod.keys_attr([keys.Key(1, secret), keys.Key(1, secret)])
    with kmod.KmodClient() as dp:
        def fails(cmd, attrs, code, text):
            try:
                dp._call(cmd, attrs, "x")
            except DatapathError as e:
                assert e.code == errno.errorcode[code] and text in e.message, (e.code, e.message)
            else:
                raise AssertionError(f"{cmd} {attrs[:1]} succeeded")
        add = kmod.VNET_CMD_VNET_ADD
        fails(add, [["VNET_A_ID", vid99], ["VNET_A_IFNAME", "vnif99"], ["VNET_A_SECURITY", 2]],
              errno.EINVAL, "keys")
        fails(add, [["VNET_A_ID", vid99], ["VNET_A_IFNAME", "vnif99"], key], errno.EINVAL, "keys")
        fails(add, [["VNET_A_ID", vid99], ["VNET_A_IFNAME", "vnif99"], ["VNET_A_SECURITY", 1], two],
              errno.EINVAL, "different key ids")
        fails(kmod.VNET_CMD_KEYS_SET, [["VNET_A_ID", vid99], key], errno.ENOENT, "does not exist")
        fails(kmod.VNET_CMD_KEYS_SET, [["VNET_A_ID", vid98], key], errno.EINVAL, "security none")
        dp._call(kmod.VNET_CMD_KEYS_SET, [["VNET_A_ID", vid97], key], "x")
        # The dump has key ids, never a secret.
        for m in dp._running():
            assert secret not in bytes(m.data)
    return 0


def test_refused_requests_keep_no_secret(lab, make_hosts, tmp_path):
    """An error ack carries a copy of the request: whatever the error, every secret in
    it was wiped first (and so in the module's memory)."""
    h = make_hosts(1)[0]
    h.vn("vnet-create", "98")
    in_ns(h, _refused_requests)


def _refused_requests() -> int:
    secrets = [bytes([i]) * 32 for i in (0x51, 0x52, 0x53)]
    held = [keys.Key(i + 1, s) for i, s in enumerate(secrets)]
    vid1, vid98, vid99 = (VnetId.parse(v).packed for v in ("1", "98", "99"))
    add, keys_set = kmod.VNET_CMD_VNET_ADD, kmod.VNET_CMD_KEYS_SET
    requests = [  # each refused: before the keys are read, while reading them, after
        (add, [["VNET_A_ID", vid1], ["VNET_A_IFNAME", "vnif1"], ["VNET_A_SECURITY", 2],
               kmod.keys_attr(held[:2])]),
        (add, [["VNET_A_ID", vid99], ["VNET_A_IFNAME", "vnif99"], kmod.keys_attr(held[:1])]),
        (add, [["VNET_A_ID", vid99], ["VNET_A_IFNAME", "vnif99"], ["VNET_A_SECURITY", 2],
               kmod.keys_attr(held)]),
        (keys_set, [["VNET_A_ID", vid98], kmod.keys_attr(held[:2])]),
        (keys_set, [["VNET_A_ID", vid99], kmod.keys_attr(held[:2])]),
    ]
    family = kmod.VnetSocket()
    raw = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
    try:
        raw.bind((0, 0))
        for seq, (cmd, attrs) in enumerate(requests, 1):
            msg = kmod.vnetmsg()
            msg["cmd"], msg["version"], msg["attrs"] = cmd, kmod.VNET_GENL_VERSION, attrs
            msg["header"]["type"] = family.prid
            msg["header"]["flags"] = 1 | 4  # NLM_F_REQUEST | NLM_F_ACK
            msg["header"]["sequence_number"] = seq
            msg.encode()
            assert any(s in msg.data for s in secrets)
            raw.send(msg.data)
            ack = raw.recv(65536)
            error = int.from_bytes(ack[16:20], "little", signed=True)
            assert int.from_bytes(ack[4:6], "little") == 2 and error < 0, (seq, ack[:20].hex())
            assert len(ack) >= 20 + len(msg.data), f"request {seq}: the ack holds no copy of it"
            assert not any(s in ack for s in secrets), f"request {seq}: a secret came back in its ack"
    finally:
        raw.close()
        family.close()
    return 0


def test_secrets_stay_out_of_listings_and_the_kernel_log(lab, make_hosts, tmp_path):
    hosts = make_hosts(2)
    key = make_key(tmp_path)
    secure_vnet(hosts, key, "conf")
    a, b = two_vms(lab, hosts)
    assert lab.ping(a, b.ip, count=2).received == 2
    secret = key.secret.hex()
    for args in (("vnets",), ("vnets", "-l"), ("vnets", "--json"), ("stats",), ("varp",)):
        out = hosts[0].vn(*args)
        assert secret not in (out.stdout + out.stderr).lower(), args
    log = subprocess.run(["dmesg"], stdout=subprocess.PIPE, text=True, check=True).stdout
    assert secret not in log.lower() and secret[:16] not in log.lower()
    assert (hosts[0].state_dir / "state.sxp").exists()
    assert secret not in (hosts[0].state_dir / "state.sxp").read_text().lower()


# ---- mixed -------------------------------------------------------------------------

def test_mixed_conf_vnet_module_and_vnetd(lab, make_hosts, tmp_path):
    sw = lab.switch("sw")
    mod = make_hosts(1, switch=sw, datapath="kmod")[0]
    daemon = make_hosts(1, switch=sw, first=2, datapath="vnetd")[0]
    key = make_key(tmp_path)
    secure_vnet([mod, daemon], key, "conf")
    a, b = two_vms(lab, [mod, daemon])
    for src, dst in ((a, b), (b, a)):
        r = lab.ping(src, dst.ip, count=3)
        assert r.received == 3 and r.duplicates == 0, r.output
    transfer(lab, a, b, "tcp", 2 << 20)  # the module's sealed super-frames to vnetd
    transfer(lab, b, a, "tcp", 2 << 20)  # and vnetd's to the module
    transfer(lab, a, b, "udp", 50)
    varp = mod.varp_table()
    assert varp[b.mac] == daemon.ip
    for h in (mod, daemon):
        drops = h.counters()
        assert not any(drops.get(f"drop:{r}") for r in ("bad-tag", "bad-seal", "unknown-key")), drops


def test_module_takes_over_from_vnetd_without_replays(lab, make_hosts, tmp_path):
    """vnetd serves a host for a while, then the module again: each starts a new
    session, which the peer confirms by a challenge, so it takes the module's packets
    again without counting any as a replay."""
    hosts = make_hosts(2)
    h0, h1 = hosts
    key = make_key(tmp_path)
    secure_vnet(hosts, key, "conf")
    a, b = two_vms(lab, hosts)
    assert lab.ping(a, b.ip, count=3).received == 3  # sealed by the module
    hook(h0, "stop")  # the module lets go of h0's vnets; they stay persisted
    hook(h0, "start", "--datapath", "vnetd")
    try:
        lab.wait_ping(a, b.ip, timeout=30)
        r = lab.ping(a, b.ip, count=5)  # sealed by vnetd, numbered from its start
        assert r.received == 5, r.output
    finally:
        hook(h0, "stop", "--datapath", "vnetd")
    before = h1.counters()
    r = hook(h0, "start", "--datapath", "kmod")
    assert "restored 1 of 1 vnets" in r.stdout, r.stdout
    answered = True
    try:
        lab.wait_ping(a, b.ip, timeout=30)
    except TimeoutError:
        answered = False
    replays = delta(before, h1.counters(), "drop:replay")
    assert replays == 0 and answered, f"the peer dropped {replays} of the module's packets as replay"
    transfer(lab, a, b, "tcp", 1 << 20)
    assert delta(before, h1.counters(), "drop:replay") == 0


def test_unload_and_load_restore_secure_vnets_with_their_keys(lab, make_hosts, tmp_path):
    hosts = make_hosts(2)
    key = make_key(tmp_path)
    secure_vnet(hosts, key, "conf")
    a, b = two_vms(lab, hosts)
    traffic = lab.popen(a, ["ping", "-q", "-i", "0.01", b.ip], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    try:
        for _ in range(3):
            loader.rmmod()  # with sealed traffic in flight and key sets to free
            out = hosts[0].vn("insmod", "-m", str(VNET_KO), "-a", hosts[0].ip).stdout
            assert "restored 1 of 1 vnets" in out, out
            hosts[1].start()
            lab.wait_ping(a, b.ip, timeout=20)
    finally:
        traffic.terminate()
        traffic.wait(10)
    listed = hosts[0].vn_json("vnets")[0]
    assert listed["security"] == "conf" and listed["keys"] == [1], listed
    r = lab.ping(b, a.ip, count=3)
    assert r.received == 3, r.output
