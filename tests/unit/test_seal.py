"""Sealed messages and key files of secure vnets (doc/security.md), without root."""
import os
import socket

import pytest

from vnet.model import keys
from vnet.wire import formats as wire
from vnet.wire import seal

KEY = bytes(range(32))
VNET97 = bytes(15) + b"\x97"
#: T4's ARP request (doc/wire-format.md), the body of vectors S1 and S2.
ARP = bytes.fromhex("ffffffffffffaa000011001108060001080006040001aa0000110011c633640b000000000000c633640c")
#: The vectors printed in doc/security.md; key 00 01 .. 1f, key id 1.
S1_AUTH = bytes.fromhex("0004020100000000000000000000000000000097010000000000c00002010000000100000002ffffffffffffaa000011001108060001080006040001aa0000110011c633640b000000000000c633640c3b425a7381496af6a28db3448ecfe560")
S2_CONF = bytes.fromhex("0004020200000000000000000000000000000097010000000000c00002010000000100000002b8e368367f391782142dbce7d08ab1719281aa90dd0fbe56e824ba92e632cd105be9a34941b3e81a4421fa2a3aaf501065d1a1f944b659bd4001")
S3_VARP = bytes.fromhex("0004010200000000000000000000000000000097010000000000c00002020000000100000003ef362980b77b45cbc17d521a1482aa734fd22b7ceb55fa34a0a62169e3d1aa9c32eee05911a7cd5a486ee78c35f7f73c07d5b32e2cf6667f579c0c")
A, B = socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.2")


def sealed(level, msg_type, body, sender=A, seq=0x0000000100000002, key=KEY, key_id=1):
    return b"".join(seal.seal(seal.aead(key), level, msg_type, VNET97, key_id, sender, seq, body))


def test_vectors():
    assert sealed(seal.AUTH, seal.TYPE_FRAME, ARP) == S1_AUTH
    assert sealed(seal.CONF, seal.TYPE_FRAME, ARP) == S2_CONF
    announce = wire.pack_varp(wire.VARP_ANNOUNCE, VNET97, bytes.fromhex("aa0000110012"), "192.0.2.2")
    assert sealed(seal.CONF, seal.TYPE_VARP, announce, sender=B, seq=0x0000000100000003) == S3_VARP
    assert bytes(seal.unseal(seal.aead(KEY), seal.AUTH, memoryview(S1_AUTH))) == ARP
    assert seal.unseal(seal.aead(KEY), seal.CONF, memoryview(S2_CONF)) == ARP
    assert ARP not in S2_CONF and ARP in S1_AUTH


def test_struct_codec_matches_construct():
    fields = seal.SealedHeader.parse(S2_CONF)
    assert (fields.type, fields.level, fields.vnet, fields.key_id, fields.sender, fields.seq) == \
        (seal.TYPE_FRAME, seal.CONF, VNET97, 1, A, 0x0000000100000002)
    assert seal.SealedHeader.build(fields) == S2_CONF[:seal.HEADER_LEN]
    assert seal.HEADER.unpack_from(S2_CONF) == (4, 2, 2, VNET97, 1, A, 0x0000000100000002)
    assert seal.HEADER.size == seal.HEADER_LEN == 38


@pytest.mark.parametrize("vector,level", [(S1_AUTH, seal.AUTH), (S2_CONF, seal.CONF)])
def test_every_changed_byte_fails(vector, level):
    """The tag covers the header (reserved bytes too), the body and itself."""
    for i in range(len(vector)):
        bad = bytearray(vector)
        bad[i] ^= 0x01
        with pytest.raises(seal.InvalidTag):
            seal.unseal(seal.aead(KEY), level, memoryview(bad))
    with pytest.raises(seal.InvalidTag):
        seal.unseal(seal.aead(bytes(32)), level, memoryview(vector))


def test_replay_window():
    w = seal.ReplayWindow()
    for seq in (10, 12, 11, 5000, 5000 - seal.WINDOW + 1):
        assert w.fresh(seq)
        w.record(seq)
    for seq in (10, 12, 11, 5000, 5000 - seal.WINDOW, 5000 - seal.WINDOW + 1, 3):
        assert not w.fresh(seq), seq
    assert w.fresh(4999) and w.fresh(5001)
    w.record(5000 + 10 * seal.WINDOW)  # a jump further than the window forgets it all
    assert not w.fresh(5000) and w.fresh(5001 + 10 * seal.WINDOW)


def test_key_gen_and_load(tmp_path):
    path = tmp_path / "k" / "97.key"
    made = keys.write_key(path, 7)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    got = keys.load_key(path)
    assert got == made and got.id == 7 and len(got.secret) == 32
    assert made.secret.hex() not in repr(made)
    with pytest.raises(keys.KeyFileError, match="already exists"):
        keys.write_key(path, 7)
    assert keys.write_key(path, 8, force=True).secret != made.secret


def test_key_file_refusals_never_show_the_key(tmp_path):
    path = tmp_path / "97.key"
    key = keys.write_key(path, 1)
    os.chmod(path, 0o640)
    with pytest.raises(keys.KeyFileError) as e:
        keys.load_key(path)
    assert "mode 0640" in str(e.value) and "chmod 600" in str(e.value)
    os.chmod(path, 0o600)
    path.write_text(path.read_text().replace("(id 1)", "(id 300)"))
    with pytest.raises(keys.KeyFileError, match="not a key file") as e:
        keys.load_key(path)
    path.write_text(f"(vnet-key (id 1) (secret {key.secret.hex()[:-1]}))")
    with pytest.raises(keys.KeyFileError) as e2:
        keys.load_key(path)
    for err in (e, e2):
        assert key.secret.hex()[:16] not in str(err.value)
    with pytest.raises(keys.KeyFileError, match="cannot open"):
        keys.load_key(tmp_path / "missing.key")
    with pytest.raises(keys.KeyFileError, match="not a regular file"):
        keys.load_key(tmp_path)
    other = tmp_path / "b.key"
    keys.write_key(other, 2)
    keys.write_key(tmp_path / "c.key", 2)
    with pytest.raises(keys.KeyFileError, match="both have key id 2"):
        keys.load_keys([str(other), str(tmp_path / "c.key")])
    with pytest.raises(keys.KeyFileError, match="1 or 2 keys"):
        keys.load_keys([])


def test_doc_shows_the_tested_vectors():
    """doc/security.md prints S1-S3 byte for byte; the doc and the code cannot drift."""
    import re
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "doc" / "security.md").read_text()
    dumps = re.findall(r"```\n((?:[0-9a-f]{4}: [0-9a-f ]+\n)+)```", doc)
    got = [bytes.fromhex("".join(line[6:] for line in d.splitlines()).replace(" ", "")) for d in dumps]
    assert got == [S1_AUTH, S2_CONF, S3_VARP]
