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
#: The sessions of the vectors' two hosts, and the challenge value of S4 and S5.
SESSION_A, SESSION_B = bytes(range(0xA0, 0xB0)), bytes(range(0xB0, 0xC0))
CHALLENGE = bytes(range(0xC0, 0xD0))
#: The vectors printed in doc/security.md; key 00 01 .. 1f, key id 1.
S1_AUTH = bytes.fromhex("00050201000000000000000000000000000000970100c0000201a0a1a2a3a4a5a6a7a8a9aaabacadaeaf0000000000000002ffffffffffffaa000011001108060001080006040001aa0000110011c633640b000000000000c633640cc5a07cb7f9c4b03869ee28e867a64156")
S2_CONF = bytes.fromhex("00050202000000000000000000000000000000970100c0000201a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00000000000000023245ecfff236bab6825a3ac7c0a6cc2c020c2c2c93f53e793fba00eba9c0497f104e7dcd2486d79f73c2a02310ced975f85d2c3c9407d72f5f8e")
S3_VARP = bytes.fromhex("00050102000000000000000000000000000000970100c0000202b0b1b2b3b4b5b6b7b8b9babbbcbdbebf0000000000000003f26785a648963fddec0be598f9407a0b95a2f17bc7b4596e1ae3431295346d35697dd82253798b94fd266c7309b553f56ca954bd19cb54cdb82af0")
S4_CHALLENGE = bytes.fromhex("00050302000000000000000000000000000000970100c0000202b0b1b2b3b4b5b6b7b8b9babbbcbdbebf0000000000000004d23f8849c57b8e8438e3f16645111655ddfb249392fc6cc8ab63371af11986bd")
S5_ANSWER = bytes.fromhex("00050402000000000000000000000000000000970100c0000201a0a1a2a3a4a5a6a7a8a9aaabacadaeaf0000000000000003794d77dad98924039f99d6cd4d9bf664c95db82852bfee543a23bc42dd1a83db")
A, B = socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.2")


def sealed(level, msg_type, body, sender=A, session=SESSION_A, counter=2, key=KEY, key_id=1):
    return b"".join(seal.seal(seal.aead(key, session), level, msg_type, VNET97, key_id, sender, session,
                              counter, body))


def test_vectors():
    assert sealed(seal.AUTH, seal.TYPE_FRAME, ARP) == S1_AUTH
    assert sealed(seal.CONF, seal.TYPE_FRAME, ARP) == S2_CONF
    announce = wire.pack_varp(wire.VARP_ANNOUNCE, VNET97, bytes.fromhex("aa0000110012"), "192.0.2.2")
    assert sealed(seal.CONF, seal.TYPE_VARP, announce, sender=B, session=SESSION_B, counter=3) == S3_VARP
    assert sealed(seal.CONF, seal.TYPE_CHALLENGE, CHALLENGE, sender=B, session=SESSION_B, counter=4) == S4_CHALLENGE
    assert sealed(seal.CONF, seal.TYPE_ANSWER, CHALLENGE, counter=3) == S5_ANSWER
    assert bytes(seal.unseal(seal.aead(KEY, SESSION_A), seal.AUTH, memoryview(S1_AUTH))) == ARP
    assert seal.unseal(seal.aead(KEY, SESSION_A), seal.CONF, memoryview(S2_CONF)) == ARP
    assert seal.unseal(seal.aead(KEY, SESSION_B), seal.CONF, memoryview(S4_CHALLENGE)) == CHALLENGE
    assert seal.unseal(seal.aead(KEY, SESSION_A), seal.CONF, memoryview(S5_ANSWER)) == CHALLENGE
    assert ARP not in S2_CONF and ARP in S1_AUTH and CHALLENGE not in S4_CHALLENGE + S5_ANSWER


#: draft-irtf-cfrg-xchacha-03, 2.2.1: HChaCha20 of key 00..1f and this input.
HCHACHA_INPUT = bytes.fromhex("000000090000004a0000000031415927")
HCHACHA_OUTPUT = bytes.fromhex("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
#: draft-irtf-cfrg-xchacha-03, A.3.1: XChaCha20-Poly1305 (ciphertext, then tag).
X_PLAINTEXT = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
               b"future, sunscreen would be it.")
X_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
X_KEY = bytes(range(0x80, 0xA0))
X_NONCE = bytes.fromhex("404142434445464748494a4b4c4d4e4f5051525354555657")
X_SEALED = bytes.fromhex(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39"
    "ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52e" "c0875924c1c7987947deafd8780acf49")


def test_hchacha20_and_xchacha20_poly1305_match_the_draft():
    """An independent check of the construction: the vectors above are the draft's, not
    made by seal.py.  XChaCha20-Poly1305 with a 24-byte nonce is ChaCha20-Poly1305 under
    HChaCha20(key, nonce[:16]) with nonce 00 00 00 00 || nonce[16:], as seal.py does."""
    assert seal.hchacha20(KEY, HCHACHA_INPUT) == HCHACHA_OUTPUT
    cipher = seal.aead(X_KEY, X_NONCE[:16])
    assert cipher.encrypt(bytes(4) + X_NONCE[16:], X_PLAINTEXT, X_AAD) == X_SEALED
    with pytest.raises(ValueError):
        seal.hchacha20(KEY, bytes(12))


def test_the_nonce_is_the_session_and_counter_as_sent():
    """A sealed message is XChaCha20-Poly1305 with the header's bytes 26..49 as nonce."""
    cipher = seal.aead(KEY, S2_CONF[seal.SESSION_AT:seal.COUNTER_AT])
    nonce = bytes(4) + S2_CONF[seal.COUNTER_AT:seal.HEADER_LEN]
    assert cipher.decrypt(nonce, S2_CONF[seal.HEADER_LEN:], S2_CONF[:seal.HEADER_LEN]) == ARP
    # Another session, same key and counter: another key stream.
    other = sealed(seal.CONF, seal.TYPE_FRAME, ARP, session=SESSION_B)
    assert other[seal.HEADER_LEN:] != S2_CONF[seal.HEADER_LEN:]
    assert seal.new_session() != seal.new_session() and len(seal.new_session()) == seal.SESSION_LEN


def test_struct_codec_matches_construct():
    fields = seal.SealedHeader.parse(S2_CONF)
    assert (fields.type, fields.level, fields.vnet, fields.key_id, fields.sender, fields.session,
            fields.counter) == (seal.TYPE_FRAME, seal.CONF, VNET97, 1, A, SESSION_A, 2)
    assert seal.SealedHeader.build(fields) == S2_CONF[:seal.HEADER_LEN]
    assert seal.HEADER.unpack_from(S2_CONF) == (5, 2, 2, VNET97, 1, A, SESSION_A, 2)
    assert seal.HEADER.size == seal.HEADER_LEN == 50 and seal.OVERHEAD == 66


@pytest.mark.parametrize("vector,level,session", [(S1_AUTH, seal.AUTH, SESSION_A), (S2_CONF, seal.CONF, SESSION_A),
                                                  (S4_CHALLENGE, seal.CONF, SESSION_B)])
def test_every_changed_byte_fails(vector, level, session):
    """The tag covers the header (reserved byte and session too), the body and itself."""
    cipher = seal.aead(KEY, session)
    for i in range(len(vector)):
        bad = bytearray(vector)
        bad[i] ^= 0x01
        with pytest.raises(seal.InvalidTag):
            seal.unseal(cipher, level, memoryview(bad))
    with pytest.raises(seal.InvalidTag):
        seal.unseal(seal.aead(bytes(32), session), level, memoryview(vector))
    with pytest.raises(seal.InvalidTag):  # the right key, the cipher of another session
        seal.unseal(seal.aead(KEY, bytes(16)), level, memoryview(vector))


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


def test_a_window_with_a_floor_takes_nothing_up_to_it():
    """A session confirmed by an answer with counter 300: nothing sealed before it."""
    w = seal.ReplayWindow(300)
    assert not any(w.fresh(n) for n in (0, 1, 299, 300, 300 - seal.WINDOW))
    assert w.fresh(301)
    w.record(305)
    assert w.fresh(301) and not w.fresh(300) and not w.fresh(305)


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
    """doc/security.md prints S1-S5 byte for byte; the doc and the code cannot drift."""
    import re
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "doc" / "security.md").read_text()
    dumps = re.findall(r"```\n((?:[0-9a-f]{4}: [0-9a-f ]+\n)+)```", doc)
    got = [bytes.fromhex("".join(line[6:] for line in d.splitlines()).replace(" ", "")) for d in dumps]
    assert got == [S1_AUTH, S2_CONF, S3_VARP, S4_CHALLENGE, S5_ANSWER]
