"""`vn capture --underlay`: the encapsulated packets of one vnet, and opening sealed ones.

The kernel filter keeps the packets that carry the vnet's id where the wire puts it
(doc/wire-format.md, doc/security.md): VUDP frames and VARP and sealed messages on
UDP port 1798, raw EtherIP (IP protocol 97) frames and sealed messages.  VFWD relays
(a whole packet inside another) and IP fragments after the first are not matched.

`--decrypt` opens the sealed frames of a `conf` vnet with the keys this host holds
for it and writes the Ethernet frame inside, so Wireshark decodes it as any frame.
"""
from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from vnet.model.keys import Key
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire
from vnet.wire import seal


def _words(base: str, offset: str, vid: VnetId) -> str:
    v = vid.packed
    return " and ".join(f"{base}[{offset}{4 * i}:4] = {int.from_bytes(v[4 * i:4 * i + 4], 'big'):#x}"
                        for i in range(4))


def underlay_expression(vid: VnetId) -> str:
    """A tcpdump expression for the outer packets of vnet `vid`."""
    ihl = "((ip[0] & 0xf) << 2) + "
    vudp = f"udp[8:2] = {wire.MSG_VUDP} and {_words('udp', '14 + ', vid)}"
    varp_or_sealed = (f"(udp[8:2] = {wire.MSG_VARP} or udp[8:2] = {seal.MSG_SEALED}) and "
                      f"{_words('udp', '12 + ', vid)}")
    raw = f"ip[{ihl}0:2] != {seal.MSG_SEALED} and {_words('ip', ihl + '2 + ', vid)}"
    raw_sealed = f"ip[{ihl}0:2] = {seal.MSG_SEALED} and {_words('ip', ihl + '4 + ', vid)}"
    return (f"(udp port {wire.PORT} and (({vudp}) or ({varp_or_sealed}))) or "
            f"(ip proto {wire.IPPROTO_ETHERIP} and (({raw}) or ({raw_sealed})))")


#: Ciphers an Opener keeps: one per (key id, session) seen, and a capture sees few
#: (one session per host and start); beyond this the cache starts again.
OPENER_CIPHERS = 256


class Opener:
    """Opens the sealed frames of one conf vnet with the keys held for it.  Each
    sender's session has its own session key (doc/security.md, "Algorithm"): derived
    once per (key id, session), not per packet."""

    def __init__(self, keys: list[Key]) -> None:
        self.secrets = {k.id: k.secret for k in keys}
        self.ciphers: dict[tuple[int, bytes], ChaCha20Poly1305] = {}

    def cipher(self, key_id: int, session: bytes) -> ChaCha20Poly1305 | None:
        """The cipher of (key id, session), or None when no such key is held."""
        cipher = self.ciphers.get((key_id, session))
        if cipher is None:
            secret = self.secrets.get(key_id)
            if secret is None:
                return None
            if len(self.ciphers) >= OPENER_CIPHERS:
                self.ciphers.clear()
            cipher = self.ciphers[key_id, session] = seal.aead(secret, session)
        return cipher

    def open(self, frame: bytes) -> tuple[bytes | None, str]:
        """(the inner Ethernet frame, a note) for a sealed frame message; (None, why
        not) for anything else, which is then written as it was captured."""
        if len(frame) < wire.ETH_HEADER_LEN + wire.IPV4_HEADER_LEN or frame[12:14] != b"\x08\x00":
            return None, "not IPv4"
        ip = wire.ETH_HEADER_LEN
        ihl = (frame[ip] & 0xF) * 4
        proto = frame[ip + 9]
        total = struct.unpack_from("!H", frame, ip + 2)[0]
        start = ip + ihl + (wire.UDP_HEADER_LEN if proto == wire.IPPROTO_UDP else 0)
        msg = memoryview(frame)[start:ip + total]
        if len(msg) >= 2 and msg[0] == 0 and msg[1] == seal.MSG_OLD_SEALED:
            return None, "sealed in the format before sessions (message id 4): not opened"
        if len(msg) < seal.OVERHEAD or msg[0] != 0 or msg[1] != seal.MSG_SEALED:
            return None, "not sealed"
        _id, mtype, level, _vnet, key_id, sender, session, counter = seal.HEADER.unpack_from(msg)
        who = f"sealed by {'.'.join(map(str, sender))} session {session.hex()} counter {counter} key {key_id}"
        if mtype != seal.TYPE_FRAME or level != seal.CONF:
            return None, who
        cipher = self.cipher(key_id, session)
        if cipher is None:
            return None, f"{who}: this host holds no key {key_id} for the vnet"
        try:
            return bytes(seal.unseal(cipher, level, msg)), f"opened with the vnet's key: {who}"
        except InvalidTag:
            return None, f"{who}: does not open with key {key_id} (tampered, or another key)"
