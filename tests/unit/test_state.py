"""Persistent host state: round trips, locking and crash safety."""
import multiprocessing
import os
import stat

import pytest

import sxp
from vnet.model.config import VnetConfig
from vnet.model.state import (
    DEFAULT_STATE_DIR,
    State,
    StateError,
    StateStore,
    resolve_state_dir,
)
from vnet.model.vnetid import VnetId


def vcfg(text, **kw):
    return VnetConfig.from_cli(text, **kw)


def test_resolve_state_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("VNET_STATE_DIR", raising=False)
    assert str(resolve_state_dir(None)) == DEFAULT_STATE_DIR == "/var/lib/vnet"
    monkeypatch.setenv("VNET_STATE_DIR", str(tmp_path / "env"))
    assert resolve_state_dir(None) == tmp_path / "env"
    assert resolve_state_dir(str(tmp_path / "opt")) == tmp_path / "opt"


def test_missing_dir_or_file_is_empty(tmp_path):
    assert StateStore(tmp_path / "nope").load() == State()
    assert StateStore(tmp_path).load() == State()
    assert not (tmp_path / "nope").exists()  # load never creates anything


def test_round_trip(tmp_path):
    store = StateStore(tmp_path / "state")
    with store.transaction() as st:
        st.add_vnet(vcfg("97"))
        st.add_vnet(vcfg("98", security="auth", encapsulation="etherip"))
        st.add_vnet(vcfg("aaff:0:0:0:0:0:77:88"))
        st.add_peer("203.0.113.7")
        st.add_peer("192.0.2.2", 1799)
        st.settings["mcaddr"] = "224.10.0.1"
    loaded = store.load()
    assert loaded == st
    assert loaded.peers == {"203.0.113.7": 1798, "192.0.2.2": 1799}
    assert loaded.settings == {"mcaddr": "224.10.0.1"}
    assert loaded.vnets[VnetId(0x98)].encapsulation == "etherip"
    # the file is one (vnet-state ...) with the documented layout
    (top,) = sxp.parse_file(store.path)
    assert top[0] == "vnet-state"
    assert ["version", "1"] in top
    assert sxp.child_value(sxp.children(top, "settings")[0], "mcaddr") == "224.10.0.1"
    assert len(sxp.children(top, "vnet")) == 3
    assert len(sxp.children(top, "peer")) == 2
    # modes
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o755
    assert [p.name for p in store.dir.iterdir() if ".tmp." in p.name] == []


def test_add_vnet_conflicts():
    st = State()
    st.add_vnet(vcfg("97"))
    with pytest.raises(StateError, match=r"vnet 0000:0000:0000:0000:0000:0000:0000:0097 already exists"):
        st.add_vnet(vcfg("97", bridge="other", vnetif="other2"))
    with pytest.raises(StateError, match=r"vnetif vnif97 is already used by vnet 0000:"):
        st.add_vnet(vcfg("1:0:0:0:0:0:0:97", bridge="x"))  # same default vnetif
    with pytest.raises(StateError, match=r"bridge vnet97 is already used by vnet 0000:"):
        st.add_vnet(vcfg("98", bridge="vnet97"))
    with pytest.raises(StateError, match=r"bridge vnif97 is already used"):
        st.add_vnet(vcfg("98", bridge="vnif97"))
    assert list(st.vnets) == [VnetId(0x97)]


def test_remove_and_find():
    st = State()
    c = vcfg("97")
    st.add_vnet(c)
    assert st.find_vnet("97") == c
    assert st.find_vnet("0000:0000:0000:0000:0000:0000:0000:0097") == c
    assert st.find_vnet("0:0:0:0:0:0:0:97") == c
    assert st.find_vnet("vnif97") == c
    assert st.find_vnet("98") is None
    assert st.find_vnet("vnif98") is None
    assert st.find_vnet("not an id") is None
    assert st.remove_vnet(VnetId(0x97)) == c
    with pytest.raises(StateError):
        st.remove_vnet(VnetId(0x97))


def test_peers_normalised_and_validated():
    st = State()
    assert st.add_peer("10.1") == "10.1.0.0"
    with pytest.raises(ValueError):
        st.add_peer("300.1.1.1")
    with pytest.raises(StateError):
        st.add_peer("10.0.0.1", 0)
    assert st.remove_peer("10.1.0.0") == 1798


def test_exception_in_transaction_writes_nothing(tmp_path):
    store = StateStore(tmp_path)
    with store.transaction() as st:
        st.add_vnet(vcfg("97"))
    before = store.path.read_bytes()
    with pytest.raises(RuntimeError):
        with store.transaction() as st:
            st.add_vnet(vcfg("98"))
            raise RuntimeError("crash")
    assert store.path.read_bytes() == before
    assert list(store.load().vnets) == [VnetId(0x97)]
    # the lock was released: another transaction can proceed
    with store.transaction() as st:
        st.add_vnet(vcfg("99"))
    assert sorted(store.load().vnets) == [VnetId(0x97), VnetId(0x99)]


@pytest.mark.parametrize(
    "content, detail",
    [
        ("(vnet-state (version 1)", "end of"),
        ("(vnet-state (version 1) (vnet (id 97) (vnif x)))", "unknown field 'vnif'"),
        ("(vnet-state (version 2))", "version"),
        ("(vnet-state (version 1) (peer (addr 1.2.3.999)))", "IPv4"),
        ("(vnet-state (version 1)) (vnet-state (version 1))", "2 top-level"),
        ("(something-else)", "vnet-state"),
        ("(vnet-state (version 1) (vnet (id 97)) (vnet (id 97)))", "already exists"),
        ("(vnet-state (version 1) (frobnicate))", "unknown entry"),
        ("", "nothing"),
    ],
)
def test_corrupt_file_is_reported_and_left_alone(tmp_path, content, detail):
    store = StateStore(tmp_path)
    store.path.write_text(content)
    original = store.path.read_bytes()
    with pytest.raises(StateError) as exc:
        store.load()
    msg = str(exc.value)
    assert str(store.path) in msg
    assert "left untouched" in msg
    if detail != "end of":
        assert detail in msg
    with pytest.raises(StateError):
        with store.transaction() as st:
            st.add_peer("192.0.2.9")  # never reached
    assert store.path.read_bytes() == original


def test_corrupt_file_mentions_sxp_error(tmp_path):
    store = StateStore(tmp_path)
    store.path.write_text("(vnet-state (version 1)\n  (vnet (id 97)\n")
    with pytest.raises(StateError) as exc:
        store.load()
    assert f"{store.path}:" in str(exc.value)  # the SxpError text, with line/column


def test_stale_temp_files_are_cleaned(tmp_path):
    store = StateStore(tmp_path)
    stale = tmp_path / "state.sxp.tmp.999999"
    stale.write_text("half a file")
    with store.transaction() as st:
        st.add_peer("192.0.2.1")
    assert not stale.exists()


def _worker(dirname, worker, count):
    store = StateStore(dirname)
    for j in range(count):
        with store.transaction() as st:
            st.add_peer(f"10.{worker}.{j}.1", 1798 + worker)


def test_concurrent_transactions(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "s"), w, 25)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 8
    store = StateStore(tmp_path / "s")
    (top,) = sxp.parse_file(store.path)
    assert top[0] == "vnet-state"
    peers = store.load().peers
    assert len(peers) == 200
    assert peers == {f"10.{w}.{j}.1": 1798 + w for w in range(8) for j in range(25)}


def test_invalid_utf8_is_reported(tmp_path):
    store = StateStore(tmp_path)
    store.path.write_bytes(b"(vnet-state (version 1) (settings (x \xff)))")
    with pytest.raises(StateError, match="UTF-8"):
        store.load()
    assert store.path.read_bytes() == b"(vnet-state (version 1) (settings (x \xff)))"


def test_saved_file_ends_with_single_newline(tmp_path):
    store = StateStore(tmp_path)
    with store.transaction() as st:
        st.add_vnet(vcfg("97"))
    text = store.path.read_text()
    assert text.startswith("#") and text.endswith(")\n") and not text.endswith("\n\n")


def test_ports_are_names_no_other_vnet_uses():
    """A port is refused where another vnet has that name as a port, bridge or vnetif."""
    s = State()
    s.add_vnet(VnetConfig.from_cli("97", ports=("r1",)))
    s.add_vnet(VnetConfig.from_cli("98", bridge="none"))
    with pytest.raises(StateError, match=r"port r1 is already used by vnet .*0097 \(as a port\)"):
        s.add_port(VnetId.parse("98"), "r1")
    with pytest.raises(StateError, match=r"port vnet97 is already used by vnet .*0097 \(as its bridge\)"):
        s.add_port(VnetId.parse("98"), "vnet97")
    with pytest.raises(StateError, match="port r1 is already in vnet"):
        s.add_port(VnetId.parse("97"), "r1")
    with pytest.raises(StateError, match="it is vnet .* vnetif"):
        s.add_port(VnetId.parse("98"), "vnif98")
    with pytest.raises(StateError, match=r"port r1 is already used by vnet .*0097 \(as a port\)"):
        s.add_vnet(VnetConfig.from_cli("99", ports=("r1",)))
    assert s.add_port(VnetId.parse("98"), "r2").ports == ("r2",)
    assert s.vnets[VnetId.parse("98")].ports == ()  # not stored by add_port
    with pytest.raises(StateError, match=r"has no port r9 \(its ports: r1\)"):
        s.remove_port(VnetId.parse("97"), "r9")
    assert s.remove_port(VnetId.parse("97"), "r1").ports == ()
    s.add_vnet(VnetConfig.from_cli("9a", bridge="none"))  # two vnets without a bridge
    assert State.from_sxp(s.to_sxp()) == s


def test_a_torn_state_file_is_refused_naming_it(tmp_path):
    """What a power loss can leave of a state file written in place (a prefix, or a
    tail of zeros where blocks were allocated but never written): every such file is
    refused, naming the file, and left as it is; only the whole file loads."""
    store = StateStore(tmp_path)
    with store.transaction() as st:
        st.add_vnet(vcfg("97"))
        st.add_vnet(vcfg("99", security="auth", key_files=("/k/99.key",), ports=("eth1",)))
        st.add_peer("192.0.2.7", 1799)
        st.settings["mcaddr"] = "224.10.0.1"
    whole = store.path.read_bytes()
    expected = store.load()
    torn = [whole[:n] for n in range(len(whole.rstrip(b"\n")))]
    torn += [whole[:n] + b"\0" * (len(whole) - n) for n in range(0, len(whole), 7)]
    for content in torn:
        store.path.write_bytes(content)
        with pytest.raises(StateError) as exc:
            store.load()
        assert str(exc.value).startswith(f"cannot load vnet state from {store.path}: "), content
        assert store.path.read_bytes() == content
    store.path.write_bytes(whole.rstrip(b"\n"))
    assert store.load() == expected


def test_key_files_are_replaced_whole(tmp_path):
    """A key file gets its name only once its contents are on disk: no temporary file
    stays behind, an existing key is not touched without --force, and with it the
    file is replaced by a new one (another inode), never truncated and rewritten."""
    from vnet.model import keys
    path = tmp_path / "keys" / "97.key"
    first = keys.write_key(path, 1)
    inode = path.stat().st_ino
    with pytest.raises(keys.KeyFileError, match="already exists"):
        keys.write_key(path, 2)
    assert keys.load_key(path) == first
    second = keys.write_key(path, 2, force=True)
    assert path.stat().st_ino != inode and keys.load_key(path) == second
    assert sorted(p.name for p in path.parent.iterdir()) == ["97.key"]
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
