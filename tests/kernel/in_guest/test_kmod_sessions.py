"""Per-start sessions on secure vnets with the kernel module (doc/security.md,
"Sessions"): a module reload starts new sessions, so sealed packets recorded before it
are never delivered after it, however empty the windows are; a vnetd peer that loses
power is no different; challenges, answers and confirmations are counted; the format
before sessions is refused by name.

One pair of module hosts carries an auth vnet and a conf vnet at once, so the reload
case covers both levels with one setup (guest time is scarce)."""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from lab.capture import Capture, ipv4_payloads
from lab.traffic import send_datagrams
from lab.vnethost import run_in_namespace
from vnet.datapath.kmod import loader
from vnet.model import keys
from vnet.model.vnetid import VnetId
from vnet.wire import seal

VNET_KO = Path(os.environ.get("VNET_KO") or loader.default_module_path())
LEVELS = {"97": "auth", "98": "conf"}
OLD_FORMAT = b"\x00\x04\x02\x02" + bytes(50)


def sealed_from(frames: list[bytes], src: str, dst: str | None = None,
                types: tuple[int, ...] = (seal.TYPE_FRAME,)) -> list[bytes]:
    """The sealed messages (id 5) of `types` that `src` sent (to `dst`) in a capture."""
    return [p for s, d, p in ipv4_payloads(frames) if s == src and dst in (None, d)
            and len(p) >= seal.OVERHEAD and p[:2] == b"\x00\x05" and p[2] in types]


def delta(before: dict, after: dict, name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def header(p: bytes) -> tuple:
    """(type, vnet, session, counter) of a sealed message."""
    _id, mtype, _level, vnet, _key, _sender, session, counter = seal.HEADER.unpack_from(p)
    return mtype, vnet, session, counter


def frames_of(key: keys.Key, level: str, messages: list[bytes]) -> set[bytes]:
    """The frames inside sealed messages (the reference opens them)."""
    out = set()
    for p in messages:
        _t, _v, session, _c = header(p)
        out.add(bytes(seal.unseal(seal.aead(key.secret, session), seal.LEVELS[level], p)))
    return out


def send_raw_etherip(payloads_hex: list[str], dst: str) -> int:
    """IP protocol 97 packets with these payloads to `dst` (run in a namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, 97) as s:
        for p in payloads_hex:
            s.sendto(bytes.fromhex(p), (dst, 0))
    return 0


def test_reload_refuses_recorded_packets_then_confirms_new_sessions(lab, make_hosts, tmp_path):
    sw = lab.switch("sw")
    hosts = make_hosts(2, switch=sw)
    attacker = lab.host("x", sw, "10.0.0.66/24")
    h0, h1 = hosts
    vkeys = {vid: keys.write_key(tmp_path / f"{vid}-1.key", 1) for vid in LEVELS}
    for vid, level in LEVELS.items():
        for h in hosts:
            h.vn("vnet-create", "-s", level, "-k", vkeys[vid].path, vid)
    vms = {vid: (lab.vm(f"a{vid}", h0.host, f"vnet{vid}", f"10.{vid}.0.1/24"),
                 lab.vm(f"b{vid}", h1.host, f"vnet{vid}", f"10.{vid}.0.2/24")) for vid in LEVELS}
    for a, b in vms.values():
        lab.wait_ping(a, b.ip, timeout=20)
    # (a) Sealed frames a VM's pings make, recorded on the underlay.
    with Capture(lab, sw) as cap:
        for a, b in vms.values():
            assert lab.ping(a, b.ip, count=3, interval=0.2).received == 3
        cap.wait_for(lambda fs: len(sealed_from(fs, h0.ip, h1.ip)) >= 6, "6 sealed frames to h1")
    recorded = sealed_from(cap.frames, h0.ip, h1.ip)
    old_sessions = {header(p)[2] for p in recorded}
    assert len(old_sessions) == 1, "one session per host, for all its vnets"
    by_vnet = {vid: [p for p in recorded if header(p)[1] == VnetId.parse(vid).packed]
               for vid in LEVELS}
    assert all(by_vnet.values()), {v: len(ps) for v, ps in by_vnet.items()}

    # The module reloads: every host here starts again (one kernel), with new sessions.
    with Capture(lab, sw) as after:
        loader.rmmod()
        out = h0.vn("insmod", "-m", str(VNET_KO), "-a", h0.ip).stdout
        assert "restored 2 of 2 vnets" in out, out
        h1.start()
        before = h1.counters()
        with contextlib.ExitStack() as stack:
            sniffers = {vid: stack.enter_context(Capture(lab, b, bridge=""))
                        for vid, (_a, b) in vms.items()}
            # Every recorded packet is refused as unconfirmed (h0's new session is
            # confirmed after the first of them is challenged; they are in the old).
            send_datagrams(lab, attacker, h1.ip, recorded)
            h1.wait_counters(before, {"drop:unconfirmed": len(recorded)})
            # Traffic works again once the challenge round trip is done.
            for a, b in vms.values():
                lab.wait_ping(a, b.ip, timeout=20)
                assert lab.ping(b, a.ip, count=2, interval=0.2).received == 2
            # The recorded packets, replayed once the new sessions are confirmed.
            mid = h1.counters()
            send_datagrams(lab, attacker, h1.ip, recorded)
            end = h1.wait_counters(mid, {"drop:unconfirmed": len(recorded)})
            assert delta(mid, end, "drop:unconfirmed") == len(recorded), (mid, end)
            assert delta(mid, end, "drop:replay") == 0, (mid, end)
        for vid, (_a, b) in vms.items():
            old = frames_of(vkeys[vid], LEVELS[vid], by_vnet[vid])
            assert not old & set(sniffers[vid].frames), f"vnet {vid}: a recorded frame reached VM b"
        after.wait_for(lambda fs: len(sealed_from(fs, h0.ip, types=(1, 2, 3, 4))) >= 4,
                       "h0's sealed messages after the reload")

    # (e) One new session after the reload (for both vnets), numbered from 1.
    new = [p for p in sealed_from(after.frames, h0.ip, types=(1, 2, 3, 4))
           if header(p)[2] not in old_sessions]
    sessions = {header(p)[2] for p in new}
    assert len(sessions) == 1, f"{len(sessions)} sessions of h0 after the reload"
    counters = sorted(header(p)[3] for p in new)
    assert counters[0] == 1 and len(set(counters)) == len(counters), counters[:10]

    # (c) Each host confirmed the other's session on both vnets, each confirmation after
    # a challenge it sent and an answer the other sent.
    c0, c1 = h0.counters(), h1.counters()
    for mine, theirs in ((c0, c1), (c1, c0)):
        assert mine.get("sessions-confirmed", 0) >= 2, mine
        assert mine.get("challenges-sent", 0) >= mine["sessions-confirmed"], mine
        assert theirs.get("answers-sent", 0) >= mine["sessions-confirmed"], (mine, theirs)
        assert not mine.get("drop:bad-answer") and not mine.get("drop:bad-tag"), mine

    # (d) The format before sessions, by UDP and raw EtherIP: counted old-seal.
    before = h1.counters()
    send_datagrams(lab, attacker, h1.ip, [OLD_FORMAT, OLD_FORMAT])
    code, _out, err = run_in_namespace(attacker.ns, send_raw_etherip, [OLD_FORMAT.hex()], h1.ip)
    assert code == 0, err
    now = h1.wait_counters(before, {"drop:old-seal": 3})
    assert delta(before, now, "drop:old-seal") == 3, (before, now)


def test_vnetd_power_loss_then_pre_restart_packets_refused(lab, make_hosts, tmp_path):
    sw = lab.switch("sw")
    mod = make_hosts(1, switch=sw, datapath="kmod")[0]
    daemon = make_hosts(1, switch=sw, first=2, datapath="vnetd")[0]
    attacker = lab.host("x", sw, "10.0.0.66/24")
    key = keys.write_key(tmp_path / "97-1.key", 1)
    for h in (mod, daemon):
        h.vn("vnet-create", "-s", "conf", "-k", key.path, "97")
    a = lab.vm("a", mod.host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", daemon.host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    with Capture(lab, sw) as cap:
        assert lab.ping(a, b.ip, count=3, interval=0.2).received == 3
        cap.wait_for(lambda fs: len(sealed_from(fs, daemon.ip, mod.ip)) >= 3
                     and len(sealed_from(fs, mod.ip, daemon.ip)) >= 3, "3 sealed frames each way")
    from_daemon = sealed_from(cap.frames, daemon.ip, mod.ip)
    from_mod = sealed_from(cap.frames, mod.ip, daemon.ip)
    daemon.kill()  # power loss: nothing saved, windows gone
    daemon.start()
    lab.wait_ping(a, b.ip, timeout=30)
    before_mod, before_daemon = mod.counters(), daemon.counters()
    with Capture(lab, a, bridge="") as sniff_a:
        send_datagrams(lab, attacker, mod.ip, from_daemon)
        send_datagrams(lab, attacker, daemon.ip, from_mod)
        now = mod.wait_counters(before_mod, {"drop:unconfirmed": len(from_daemon)})
        assert delta(before_mod, now, "drop:unconfirmed") == len(from_daemon), (before_mod, now)
        # The module kept its session, which vnetd confirmed again after its restart
        # with every counter up to the answer's seen: the recorded ones are replays.
        now = daemon.wait_counters(before_daemon, {"drop:replay": len(from_mod)})
        assert delta(before_daemon, now, "drop:replay") == len(from_mod), (before_daemon, now)
    assert not frames_of(key, "conf", from_daemon) & set(sniff_a.frames), "a recorded frame reached VM a"
    for src, dst in ((a, b), (b, a)):
        r = lab.ping(src, dst.ip, count=3, interval=0.2)
        assert r.received == 3 and r.duplicates == 0, r.output
    c = mod.counters()
    assert c.get("sessions-confirmed", 0) >= 2 and c.get("answers-sent", 0) >= 2, c
