"""Seed corpora for the fuzz targets, made from the documented vectors at run time.

Nothing binary is committed: the seeds are read out of the documents and the unit
tests (hex dumps of doc/wire-format.md T2-T6 and doc/security.md S1-S5, the config
and state records printed in doc/, doc/examples, the S-expressions the unit tests
parse) or built with the project's own encoders (formats, and the public seal API,
so sealed seeds follow any change of the sealed format).

`python -m tests.fuzz.seeds DIR` writes them to DIR/<target>/.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import re
import socket
from pathlib import Path

from tests.fuzz import scenario as sc
from vnet.model.config import VnetConfig
from vnet.model.state import State
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire
from vnet.wire import seal
import sxp

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "doc"
HEX_DUMP = re.compile(r"```\n((?:[0-9a-f]{4}: [0-9a-f ]+?(?:   [^\n]*)?\n)+)```")
SXP_BLOCK = re.compile(r"```[a-z]*\n(\(.*?)```", re.S)
UNIT_SXP = ("test_sxp.py", "test_config.py", "test_state.py")


def doc_dumps(name: str) -> list[bytes]:
    """The hex dumps of a document (`0000: 00 01 ...   comment` lines), in order."""
    out = []
    for block in HEX_DUMP.findall((DOC / name).read_text()):
        hexes = [line[6:].split("   ")[0] for line in block.splitlines()]
        out.append(bytes.fromhex("".join(hexes).replace(" ", "")))
    return out


def doc_sxp() -> list[str]:
    """The S-expression blocks of every document, and the example configs."""
    texts = [t for f in sorted(DOC.glob("*.md")) for t in SXP_BLOCK.findall(f.read_text())]
    return texts + [p.read_text() for p in sorted((DOC / "examples").glob("*.sxp"))]


def unit_sxp() -> list[str]:
    """The S-expression strings the unit tests of sxp, config and state parse."""
    out = []
    for name in UNIT_SXP:
        tree = ast.parse((ROOT / "tests" / "unit" / name).read_text())
        out += [n.value for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.lstrip().startswith("(")]
    return out


def aton(addr: str) -> bytes:
    return socket.inet_aton(addr)


def vid(name: str) -> bytes:
    return VnetId.parse(name).packed


def tcp_frame(size: int) -> bytes:
    """A TCP/IPv4 frame from VM1 to VM2 of `size` bytes (a super-frame above 1514)."""
    ip = bytes([0x45, 0]) + (size - 14).to_bytes(2, "big") + bytes(5) + b"\x06" + bytes(2) + bytes(8)
    tcp = bytes(12) + bytes([0x50, 0x10]) + bytes(6)
    return sc.VM2 + sc.VM1 + b"\x08\x00" + ip + tcp + bytes(size - 54)


def receive() -> dict[str, bytes]:
    """Packets of every kind the receive rules take, each as an input of one or two
    records (tests/fuzz/scenario.py)."""
    t2, t3, t4, t5, t6 = doc_dumps("wire-format.md")
    s1, s2, s3, s4, s5 = doc_dumps("security.md")
    arp = t4[0x32:]
    udp_t4, udp_t6 = t4[28:], t6[28:]
    U, G, R = sc.UNICAST, sc.GROUP_UDP, sc.RAW
    r = sc.record
    out = {
        "t2-request": r(G, sc.A, t2), "t3-announce": r(U, sc.B, t3), "t4-flood": r(G, sc.A, udp_t4),
        "t4-unicast": r(U, sc.A, udp_t4), "t5-raw": r(R, sc.A, t5), "t6-vfwd": r(U, sc.A, udp_t6),
        "s1-auth-97": r(U, sc.A, s1), "s2-conf-97": r(U, sc.A, s2), "s3-varp-97": r(U, sc.B, s3),
        "s4-challenge-97": r(U, sc.B, s4), "s5-answer-97": r(U, sc.A, s5),
    }

    def sealed(name: str, level: int, mtype: int, body: bytes, sender: str = sc.A, seq: int = 2,
               key_id: int = 1, session: bytes = sc.SESSION) -> bytes:
        return b"".join(seal.seal(seal.aead(sc.KEYS[key_id], session), level, mtype, vid(name), key_id,
                                  aton(sender), session, seq, body))

    request = {n: wire.pack_varp(wire.VARP_REQUEST, vid(n), sc.VM2, sc.A) for n in sc.VNETS}
    announce = {n: wire.pack_varp(wire.VARP_ANNOUNCE, vid(n), sc.VM1, sc.A) + wire.VARP_EXT_SUPER
                for n in sc.VNETS}
    auth_frame = sealed("98", seal.AUTH, seal.TYPE_FRAME, arp)
    out.update({
        "auth-frame": r(U, sc.A, auth_frame),
        "auth-frame-key2": r(U, sc.B, sealed("98", seal.AUTH, seal.TYPE_FRAME, arp, sc.B, 9, key_id=2)),
        "auth-replay": r(U, sc.A, auth_frame) + r(U, sc.A, auth_frame),
        "auth-request": r(U, sc.A, sealed("98", seal.AUTH, seal.TYPE_VARP, request["98"])),
        "conf-frame": r(G, sc.B, sealed("99", seal.CONF, seal.TYPE_FRAME, arp, sc.B)),
        "conf-announce": r(U, sc.A, sealed("99", seal.CONF, seal.TYPE_VARP, announce["99"])),
        "conf-raw": r(R, sc.A, wire.ipv4_header(aton(sc.A), aton(sc.HERE), wire.IPPROTO_ETHERIP, 108)
                      + sealed("99", seal.CONF, seal.TYPE_FRAME, arp)),
        "request-97": r(U, sc.B, request["97"]),
        "announce-97": r(G, sc.A, announce["97"]),
        "vudp-super": r(U, sc.B, wire.vudp_prefix(vid("97")) + tcp_frame(3000)),
        "vudp-super-mtu-68": r(U, sc.B, wire.vudp_prefix(vid("9b")) + tcp_frame(2000)),
        "raw-switching": r(R, sc.B, wire.ipv4_header(aton(sc.B), aton(sc.GROUP), wire.IPPROTO_ETHERIP, 56)
                           + wire.etherip_prefix(vid("9a")) + arp),
        "raw-unicast-switching": r(R, sc.B, wire.ipv4_header(aton(sc.B), aton(sc.HERE), wire.IPPROTO_ETHERIP, 56)
                                   + wire.etherip_prefix(vid("9a")) + sc.VM2 + arp[6:]),
        "group-relayed-twice": r(G, sc.FAR, udp_t4, 5) + r(G, sc.FAR, udp_t4, 5),
    })
    flood = wire.vudp_prefix(vid("97")) + arp
    inner = wire.vfwd_inner_udp(aton(sc.FAR), aton(sc.GROUP), len(flood), ttl=3)
    out["vfwd-udp"] = r(U, sc.C, wire.VFWD_HEADER + inner + flood)
    out["vfwd-hop-limit"] = r(U, sc.C, wire.VFWD_HEADER
                              + wire.vfwd_inner_udp(aton(sc.FAR), aton(sc.GROUP), len(flood), ttl=1) + flood)
    raw_flood = wire.etherip_prefix(vid("9a")) + arp
    out["vfwd-raw"] = r(U, sc.C, wire.VFWD_HEADER + wire.ipv4_header(
        aton(sc.FAR), aton(sc.GROUP), wire.IPPROTO_ETHERIP, len(raw_flood), ttl=4, df=True) + raw_flood)
    # The original forwarder's relay: only protocol, source and destination filled in.
    bare = bytearray(20)
    bare[9], bare[12:16], bare[16:20] = wire.IPPROTO_UDP, aton(sc.FAR), aton(sc.GROUP)
    out["vfwd-bare"] = r(U, sc.C, wire.VFWD_HEADER + bytes(bare) + bytes(8) + flood)
    out["vfwd-sealed"] = r(U, sc.A, wire.VFWD_HEADER + wire.vfwd_inner_udp(
        aton(sc.FAR), aton(sc.GROUP), 108, ttl=2) + sealed("98", seal.AUTH, seal.TYPE_FRAME, arp, sc.FAR))
    # Sessions: a sender's new session (unconfirmed: challenged), a challenge to
    # answer, B's answer to the challenge pending for it and then a frame in the session
    # it confirmed, a wrong answer, and the format before sessions.
    new = bytes(range(0x40, 0x50))
    out.update({
        "auth-new-session": r(U, sc.A, sealed("98", seal.AUTH, seal.TYPE_FRAME, arp, session=new)),
        "conf-new-session-twice": r(G, sc.C, sealed("99", seal.CONF, seal.TYPE_VARP, announce["99"], sc.C,
                                                    session=new))
        + r(G, sc.C, sealed("99", seal.CONF, seal.TYPE_VARP, announce["99"], sc.C, 3, session=new)),
        "auth-challenge": r(U, sc.A, sealed("98", seal.AUTH, seal.TYPE_CHALLENGE, sc.CHALLENGE)),
        "conf-challenge-raw": r(R, sc.A, wire.ipv4_header(aton(sc.A), aton(sc.HERE), wire.IPPROTO_ETHERIP, 82)
                                + sealed("99", seal.CONF, seal.TYPE_CHALLENGE, sc.CHALLENGE)),
        "conf-answer-then-frame": r(U, sc.B, sealed("99", seal.CONF, seal.TYPE_ANSWER, sc.CHALLENGE, sc.B, 7,
                                                    session=new))
        + r(U, sc.B, sealed("99", seal.CONF, seal.TYPE_FRAME, arp, sc.B, 8, session=new)),
        "auth-bad-answer": r(U, sc.A, sealed("98", seal.AUTH, seal.TYPE_ANSWER, bytes(16))),
        "old-seal": r(U, sc.A, b"\x00\x04" + s2[2:]),
        "old-seal-raw": r(R, sc.A, wire.ipv4_header(aton(sc.A), aton(sc.HERE), wire.IPPROTO_ETHERIP, len(s2))
                          + b"\x00\x04" + s2[2:]),
    })
    out["short"] = r(U, sc.B, b"\x00\x02")
    return out


def sxp_texts() -> dict[str, bytes]:
    texts = doc_sxp() + unit_sxp() + [sxp.pretty(State().to_sxp())]
    return {f"sxp-{i}": t.encode() for i, t in enumerate(texts)}


def config() -> dict[str, bytes]:
    texts = [t for t in doc_sxp() + unit_sxp() if "(vnet " in t or "(vnet\n" in t]
    cfgs = [VnetConfig.from_cli("97"), VnetConfig.from_cli("9a", security="conf", encapsulation="etherip",
                                                           key_files=("/k/a.key", "/k/b.key")),
            VnetConfig.from_cli("1:2:3:4:5:6:7:8", mtu=9000, ports=("eth1",))]
    texts += [sxp.pretty(c.to_sxp()) for c in cfgs]
    texts.append("(vnet (id 97) (endpoint udp listen 127.0.0.1:5000))")
    return {f"config-{i}": t.encode() for i, t in enumerate(texts)}


def state() -> dict[str, bytes]:
    texts = [t for t in doc_sxp() + unit_sxp() if "vnet-state" in t]
    s = State()
    s.settings["group"] = "224.10.0.1"
    s.add_vnet(VnetConfig.from_cli("97"))
    s.add_vnet(VnetConfig.from_cli("99", security="auth", key_files=("/var/lib/vnet/keys/99.key",)))
    s.add_peer("203.0.113.7", 1799)
    texts.append(sxp.pretty(s.to_sxp()))
    return {f"state-{i}": t.encode() for i, t in enumerate(texts)}


def keys() -> dict[str, bytes]:
    return {
        "doc": b"(vnet-key (id 1) (secret 5f0c...64 hex digits...))\n",
        "key-1": f"(vnet-key (id 1) (secret {sc.KEY1.hex()}))\n".encode(),
        "key-255": f"( vnet-key\n  (id 255)\n  (secret {sc.KEY2.hex().upper()}) )".encode(),
    }


SEEDS = {"receive": receive, "sxp": sxp_texts, "config": config, "state": state, "keys": keys}


def write(target: str, directory: Path) -> int:
    """Write a target's seeds to `directory` (named by content, as libFuzzer names
    corpus files); returns how many."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = SEEDS[target]()
    for data in seeds.values():
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(seeds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", type=Path)
    args = ap.parse_args()
    for target in SEEDS:
        print(target, write(target, args.directory / target))


if __name__ == "__main__":
    main()
