"""The kernel module's client on a host that cannot load modules: datapath selection,
module loading checks, the netlink message class against the uapi header, errors.

What needs the module itself (every Datapath call against a real kernel) runs in
the QEMU guest under tests/kernel/."""
from __future__ import annotations

import errno
import re
import socket
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT
from pyroute2.netlink.exceptions import NetlinkError

from vnet.cli.vn import vn
from vnet.control import records
from vnet.control.controller import Controller, resolve_choice, select_datapath
from vnet.control.datapath import Datapath
from vnet.control.protocol import VnetdClient
from vnet.control.restore import restore
from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import family, loader
from vnet.errors import DatapathError
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointSpec
from vnet.model.state import State
from vnet.model.vnetid import VnetId

#: The header that defines the family (kmod/uapi/vnet_genl.h at the time of writing).
UAPI = next(p for p in sorted((ROOT / "kmod" / "uapi").glob("*.h")) if "VNET_GENL_NAME" in p.read_text())
module_missing = pytest.mark.skipif(kmod.module_loaded(), reason="the vnet module is loaded here")
no_module_support = pytest.mark.skipif(Path("/proc/modules").exists(),
                                       reason="this kernel can load modules")


def uapi_enum(name: str) -> list[str]:
    """The member names of `enum NAME` in the header, in order (all are implicitly numbered)."""
    body = re.search(r"enum %s \{(.*?)\};" % name, UAPI.read_text(), re.DOTALL)
    assert body, f"enum {name} not in {UAPI}"
    text = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.DOTALL)
    members = [m.strip() for m in text.split(",") if m.strip()]
    assert all("=" not in m for m in members), "explicit values: this parser needs updating"
    return members


# ---- the message class mirrors the uapi header --------------------------------------------

def test_commands_and_attributes_match_the_uapi_header() -> None:
    """Both are generated from kmod/vnet.yaml (tests/unit/test_genl.py): this checks the
    generator's two outputs against each other, and the client's use of them."""
    text = UAPI.read_text()
    assert f'#define VNET_GENL_NAME\t\t"{kmod.VNET_GENL_NAME}"' in text
    assert f"#define VNET_GENL_VERSION\t{kmod.VNET_GENL_VERSION}" in text
    for number, name in enumerate(uapi_enum("vnet_cmd")[:-1]):
        assert getattr(family, name) == number, name
        assert getattr(kmod, name, number) == number, name  # what the client imports is the same
    assert kmod.vnetmsg is family.vnetmsg
    attrs = uapi_enum("vnet_attr")[:-1]
    assert [entry[0] for entry in kmod.vnetmsg.nla_map] == attrs
    stat_map = kmod.vnetmsg.stat.nla_map + kmod.vnetmsg.stats.nla_map
    for number, name, _ in stat_map:
        assert attrs[number] == name
    assert [f"VNET_ENCAP_{e.upper()}" for e in kmod.ENCAP_VALUES] == uapi_enum("vnet_encap")
    assert [f"VNET_SECURITY_{s.upper()}" for s in kmod.SECURITY_VALUES] == uapi_enum("vnet_security")


SAMPLES = {
    "VNET_A_ID": VnetId.parse("97").packed,
    "VNET_A_IFNAME": "vnif97",
    "VNET_A_IFINDEX": 7,
    "VNET_A_ENCAP": 1,
    "VNET_A_SECURITY": 0,
    "VNET_A_HEADER": 64,
    "VNET_A_MTU": 1448,
    "VNET_A_MAC": bytes.fromhex("aa0000110012"),
    "VNET_A_ADDR": "192.0.2.1",
    "VNET_A_PORT": 1798,
    "VNET_A_AGE_MS": 61_500,
    "VNET_A_RX_PACKETS": 1 << 40,
    "VNET_A_TX_PACKETS": 2,
    "VNET_A_RX_BYTES": 3,
    "VNET_A_TX_BYTES": 4,
    "VNET_A_RX_DROPPED": 5,
    "VNET_A_TX_DROPPED": 6,
    "VNET_A_MCADDR": "224.10.0.1",
    "VNET_A_TTL": 60,
    "VNET_A_SWEEPS": 9,
    "VNET_A_STAT_NAME": "floods",
    "VNET_A_STAT_VALUE": 11,
}


def stats_nest(values: dict[str, int]) -> dict:
    return {"attrs": [["VNET_A_STAT", {"attrs": [["VNET_A_STAT_NAME", k], ["VNET_A_STAT_VALUE", v]]}]
                      for k, v in values.items()]}


def roundtrip(attrs: list) -> kmod.vnetmsg:
    msg = kmod.vnetmsg()
    msg["cmd"] = kmod.VNET_CMD_GET
    msg["version"] = kmod.VNET_GENL_VERSION
    msg["attrs"] = attrs
    msg.encode()
    back = kmod.vnetmsg(msg.data)
    back.decode()
    return back


def test_every_attribute_survives_encoding_and_decoding() -> None:
    counters, drops = {"floods": 3, "announces-sent": 1 << 33}, {"unknown-vnet": 28}
    back = roundtrip([[k, v] for k, v in SAMPLES.items()]
                     + [["VNET_A_COUNTERS", stats_nest(counters)], ["VNET_A_DROPS", stats_nest(drops)],
                        ["VNET_A_STAT", {"attrs": [["VNET_A_STAT_NAME", "x"], ["VNET_A_STAT_VALUE", 1]]}]])
    assert back["cmd"] == kmod.VNET_CMD_GET and back["version"] == 1
    # pyroute2's receive loop reads msg.get("header"): it must not find VNET_A_HEADER.
    assert back.get("header")["length"] == len(back.data)
    for name, value in SAMPLES.items():
        assert back.get_attr(name) == value, name
    assert kmod.stat_values(back.get_attr("VNET_A_COUNTERS")) == counters
    assert kmod.stat_values(back.get_attr("VNET_A_DROPS")) == drops
    assert back.get_attr("VNET_A_STAT").get_attr("VNET_A_STAT_NAME") == "x"


def test_the_client_names_only_attributes_of_the_uapi() -> None:
    """pyroute2 drops an attribute with an unknown name without a word: catch typos."""
    used = set(re.findall(r"VNET_A_[A-Z_]+", Path(kmod.__file__).read_text()))
    assert used and used <= set(uapi_enum("vnet_attr")), used - set(uapi_enum("vnet_attr"))


def test_wire_layout_is_the_uapi_one() -> None:
    """Addresses are be32 (network order), the port is host order, nests are flagged."""
    msg = kmod.vnetmsg()
    msg["cmd"], msg["version"] = kmod.VNET_CMD_PEER_ADD, 1
    msg["attrs"] = [["VNET_A_ADDR", "192.0.2.1"], ["VNET_A_PORT", 1799],
                    ["VNET_A_COUNTERS", stats_nest({"a": 1})]]
    msg.encode()
    data = bytes(msg.data)
    assert data[16:20] == bytes([kmod.VNET_CMD_PEER_ADD, 1, 0, 0])
    assert data[20:28] == struct.pack("=HH", 8, 9) + socket.inet_aton("192.0.2.1")
    assert data[28:34] == struct.pack("=HHH", 6, 10, 1799)
    assert struct.unpack_from("=H", data, 38)[0] == 21 | 0x8000  # COUNTERS | NLA_F_NESTED
    assert struct.unpack_from("=H", data, 42)[0] == 23 | 0x8000  # STAT | NLA_F_NESTED


def nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + bytes(-len(raw) % 4)


def test_decodes_a_reply_built_as_the_module_builds_it() -> None:
    """Padding attributes before u64s and flagged nests, as nla_put_u64_64bit and
    nla_nest_start make them, independent of pyroute2's own encoder."""
    u64 = lambda kind, v: nla(26, b"") + nla(kind, struct.pack("=Q", v))
    stat = nla(23 | 0x8000, nla(24, b"duplicate\0") + u64(25, 4))
    body = (nla(18, socket.inet_aton("224.10.0.1")) + nla(10, struct.pack("=H", 1798))
            + nla(19, struct.pack("=I", 60)) + u64(20, 12) + nla(9, socket.inet_aton("10.0.0.1"))
            + nla(3, struct.pack("=I", 2)) + nla(2, b"eth0\0") + nla(21 | 0x8000, b"")
            + nla(22 | 0x8000, stat))
    data = struct.pack("=IHHII", 20 + len(body), 0x20, 0, 1, 0) + bytes([kmod.VNET_CMD_GET, 1, 0, 0]) + body
    msg = kmod.vnetmsg(data)
    msg.decode()
    assert (msg.get_attr("VNET_A_MCADDR"), msg.get_attr("VNET_A_PORT"), msg.get_attr("VNET_A_TTL"),
            msg.get_attr("VNET_A_SWEEPS"), msg.get_attr("VNET_A_ADDR"), msg.get_attr("VNET_A_IFNAME")) == \
        ("224.10.0.1", 1798, 60, 12, "10.0.0.1", "eth0")
    assert kmod.stat_values(msg.get_attr("VNET_A_COUNTERS")) == {}
    assert kmod.stat_values(msg.get_attr("VNET_A_DROPS")) == {"duplicate": 4}


# ---- errors --------------------------------------------------------------------------

def test_netlink_errors_become_datapath_errors_with_the_kernels_text() -> None:
    e = kmod.netlink_error(NetlinkError(errno.EINVAL, "a peer must be a unicast address"), "cannot add peer X")
    assert (e.code, e.message) == ("EINVAL", "cannot add peer X: a peer must be a unicast address")
    plain = kmod.netlink_error(NetlinkError(errno.ENOENT), "cannot delete vnet 97")
    assert (plain.code, plain.message) == ("ENOENT", "cannot delete vnet 97: No such file or directory")
    # An errno that means what it means for vnetd gets vnetd's text, whatever the kernel said.
    known = {errno.ENOENT: "10.0.0.9 is not a peer"}
    for exc in (NetlinkError(errno.ENOENT, "not a peer"), NetlinkError(errno.ENOENT)):
        assert kmod.netlink_error(exc, "x", known).message == "10.0.0.9 is not a peer"
    assert kmod.netlink_error(NetlinkError(errno.EPERM, "no"), "x", known).message == "x: no"
    assert kmod.netlink_error(NetlinkError(4242), "x").code == "EIO"


def test_ext_ack_is_on_and_reaches_the_message() -> None:
    """A real kernel refusal, through the client's own socket and request path (the
    ethtool family stands in for the module: it answers a header without
    NLA_F_NESTED with an extended ack)."""
    try:
        sock = kmod.VnetSocket("ethtool")
    except DatapathError:
        pytest.skip("no ethtool netlink family in this kernel")
    with kmod.KmodClient(sock) as client:
        with pytest.raises(DatapathError) as info:
            client._call(2, [["VNET_A_ID", struct.pack("=HHI", 8, 1, 9999)]], "reading link info")
    assert info.value.code == "EINVAL"
    assert info.value.message.startswith("reading link info: ")
    assert info.value.message != "reading link info: Invalid argument"  # the kernel's own words


@module_missing
def test_client_says_the_module_is_not_loaded() -> None:
    assert not kmod.module_loaded()
    with pytest.raises(DatapathError) as info:
        kmod.KmodClient()
    assert info.value.message == kmod.NOT_LOADED and "vn insmod" in kmod.NOT_LOADED


# ---- datapath selection ----------------------------------------------------------------

@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("VNET_DATAPATH", raising=False)
    monkeypatch.delenv("VNET_SOCKET", raising=False)


@pytest.fixture
def vnetd_socket(tmp_path: Path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(tmp_path / "vnetd.sock"))
    s.listen(4)
    yield tmp_path / "vnetd.sock"
    s.close()


class FakeKmod:
    """Stands in for KmodClient where the module cannot be loaded."""

    kind = "kmod"


def test_running_vnetd_wins_over_a_loaded_module(no_env, vnetd_socket, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(kmod, "module_loaded", lambda: True)
    monkeypatch.setattr(kmod, "KmodClient", FakeKmod)
    dp = select_datapath(tmp_path, None)
    assert isinstance(dp, VnetdClient) and dp.path == vnetd_socket
    vnetd_socket.parent.joinpath("other").mkdir()
    assert isinstance(select_datapath(tmp_path / "other", None), FakeKmod)  # no vnetd there
    assert isinstance(select_datapath(tmp_path, None, "kmod"), FakeKmod)  # explicit wins
    monkeypatch.setenv("VNET_DATAPATH", "kmod")
    assert isinstance(select_datapath(tmp_path, None), FakeKmod)
    assert isinstance(select_datapath(tmp_path, None, "vnetd"), VnetdClient)  # the option beats the env


def test_no_datapath_names_both_ways_to_get_one(no_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(kmod, "module_loaded", lambda: False)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "vnetd.sock"))  # a socket file nobody listens on
    stale.close()
    with pytest.raises(DatapathError) as info:
        select_datapath(tmp_path, None)
    msg = info.value.message  # the file is there, so it is named as stale, with the fix
    assert msg.startswith(f"vnetd is not running ({tmp_path}/vnetd.sock is a stale control socket: "
                          "the vnetd that made it is gone)")
    assert "start vnetd with 'vnetd' (it replaces the stale socket)" in msg and "'vn insmod'" in msg
    (tmp_path / "vnetd.sock").unlink()
    with pytest.raises(DatapathError) as info:
        select_datapath(tmp_path, None)
    msg = info.value.message
    assert msg.startswith(f"vnetd is not running (no control socket at {tmp_path}/vnetd.sock)")
    assert "'vnetd'" in msg and "'vn insmod'" in msg and "stale" not in msg
    # vnetd chosen explicitly: its client, which explains itself when used.
    assert isinstance(select_datapath(tmp_path, None, "vnetd"), VnetdClient)


@module_missing
def test_explicit_kmod_without_the_module(no_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VNET_DATAPATH", "kmod")
    with pytest.raises(DatapathError) as info:
        select_datapath(tmp_path, None)
    assert info.value.message == kmod.NOT_LOADED


def test_bad_choice(no_env, monkeypatch) -> None:
    monkeypatch.setenv("VNET_DATAPATH", "kernel")
    with pytest.raises(DatapathError, match="VNET_DATAPATH=kernel: expected one of auto, kmod, vnetd"):
        resolve_choice(None)
    assert resolve_choice("vnetd") == "vnetd"
    with pytest.raises(DatapathError, match="--datapath=x"):
        resolve_choice("x")


def test_the_datapath_is_chosen_only_when_needed(no_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(kmod, "module_loaded", lambda: False)
    ctrl = Controller(str(tmp_path), choice="auto")
    assert ctrl.vnet_ids() == []
    with pytest.raises(DatapathError, match="vnetd is not running"):
        ctrl.datapath
    r = CliRunner().invoke(vn, ["--datapath", "kmod", "--state-dir", str(tmp_path), "vnet-list"])
    assert r.exit_code == 0 and r.output == ""
    r = CliRunner().invoke(vn, ["--datapath", "kernel", "vnets"])
    assert r.exit_code == 2 and "'kernel' is not one of 'auto', 'kmod', 'vnetd'" in r.output


# ---- loading the module --------------------------------------------------------------

@pytest.mark.parametrize("params, expect", [
    ("", ""),
    ("varp_mcaddr=224.10.0.5", "varp_mcaddr=224.10.0.5"),
    ("  varp_mcaddr=239.1  ", "varp_mcaddr=239.1.0.0"),
])
def test_module_params_accepted(params: str, expect: str) -> None:
    assert loader.module_params(params) == expect


@pytest.mark.parametrize("params, needle", [
    ("varp_mcaddr=10.0.0.1", "module parameter varp_mcaddr=10.0.0.1: 10.0.0.1 is not a multicast address"),
    ("varp_mcaddr=224.1.2.300", "module parameter varp_mcaddr=224.1.2.300: invalid IPv4 address"),
    ("varp_mcaddr", "unknown module parameter 'varp_mcaddr': the vnet module takes only varp_mcaddr=ADDR"),
    ("debug=1", "unknown module parameter 'debug=1'"),
    ("varp_mcaddr=224.1.1.1 varp_mcaddr=224.1.1.2", "module parameter varp_mcaddr is given twice"),
])
def test_module_params_refused(params: str, needle: str) -> None:
    with pytest.raises(DatapathError) as info:
        loader.module_params(params)
    assert info.value.code == "EINVAL" and needle in info.value.message


def test_insmod_checks_params_before_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatapathError, match="unknown module parameter"):
        loader.insmod(tmp_path / "missing.ko", "bogus=1")
    with pytest.raises(DatapathError) as info:
        loader.insmod(tmp_path / "missing.ko")
    assert (info.value.code, info.value.message) == ("ENOENT", f"{tmp_path}/missing.ko: no such module file")


def test_default_module_path(tmp_path: Path) -> None:
    tree, modules = tmp_path / "src", tmp_path / "lib" / "6.1.0-test"
    modules.mkdir(parents=True)
    # Installed (no source tree around the package): no talk of a tree's kmod/vnet.ko.
    with pytest.raises(DatapathError) as info:
        loader.default_module_path(tree, modules)
    assert info.value.message == (
        f"no vnet module to load: none installed for this kernel ({modules}/modules.dep); install it "
        "with 'make -C kmod dkms-install' in a vnet source tree, or give its path with --module")
    (tree / "kmod").mkdir(parents=True)
    (tree / "kmod" / "Kbuild").write_text("obj-m := vnet.o\n")
    with pytest.raises(DatapathError) as info:
        loader.default_module_path(tree, modules)
    assert info.value.message == (
        f"no vnet module to load: neither {tree}/kmod/vnet.ko nor one installed for this kernel "
        f"({modules}/modules.dep); build it with 'make -C {tree}/kmod', or give its path with --module")
    (modules / "modules.dep").write_text(
        "kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko\n"
        "extra/vnet.ko:\n"
        "updates/dkms/vnet.ko.xz: kernel/net/bridge/bridge.ko\n"
        "extra/notvnet.ko:\n")
    assert loader.default_module_path(tree, modules) == modules / "updates/dkms/vnet.ko.xz"
    (modules / "modules.dep").write_text("extra/vnet.ko:\n")
    assert loader.default_module_path(tree, modules) == modules / "extra/vnet.ko"
    (tree / "kmod" / "vnet.ko").write_bytes(b"")
    assert loader.default_module_path(tree, modules) == tree / "kmod" / "vnet.ko"


@no_module_support
def test_insmod_and_rmmod_on_a_kernel_without_modules(tmp_path: Path) -> None:
    ko = tmp_path / "vnet.ko"
    ko.write_bytes(b"\x7fELF")
    with pytest.raises(DatapathError, match=r"cannot load modules: it was built without module support") as info:
        loader.insmod(ko, "varp_mcaddr=224.10.0.1")
    assert info.value.code == "ENOSYS"
    with pytest.raises(DatapathError, match="has no module support"):
        loader.rmmod()


# ---- restoring the state -------------------------------------------------------------

class Recorder(Datapath):
    """A datapath that records what it is asked and refuses vnet 98."""

    kind = "test"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def vnet_add(self, cfg: VnetConfig) -> None:
        if cfg.id == VnetId.parse("98"):
            raise DatapathError("EEXIST", "a device named vnif98 already exists on this host")
        self.calls.append(("vnet", str(cfg.id)))

    def peer_add(self, addr: str, port: int) -> None:
        self.calls.append(("peer", addr, port))

    def set_mcaddr(self, addr: str) -> None:
        self.calls.append(("group", addr))

    vnet_del = vnet_keys = vnets = vif_add = vif_del = vifs = peer_del = peers = varp_flush = varp = stats = \
        port_add = port_del = ports = endpoint_add = endpoint_del = endpoints = \
        lambda self, *a: None  # type: ignore[assignment]


def test_restore_keeps_going_past_a_bad_vnet() -> None:
    state = State()
    for v in ("97", "98", "99"):
        state.add_vnet(VnetConfig.from_cli(v))
    state.add_peer("10.0.0.9", 1799)
    state.settings["mcaddr"] = "224.10.0.7"
    dp = Recorder()
    vnets, peers, failed = restore(dp, state)
    assert (vnets, peers) == (2, 1)
    assert failed == [f"cannot restore vnet {VnetId.parse('98')}: a device named vnif98 already exists on this host"]
    assert dp.calls[0] == ("group", "224.10.0.7") and ("peer", "10.0.0.9", 1799) in dp.calls
    dp = Recorder()
    restore(dp, state, group=False)  # a group given at load time wins
    assert all(c[0] != "group" for c in dp.calls)


def test_insmod_refuses_a_bad_underlay_choice_before_loading(tmp_path: Path, monkeypatch) -> None:
    loads = []
    monkeypatch.setattr(loader, "insmod", lambda *a: loads.append(a))
    runner = CliRunner()
    r = runner.invoke(vn, ["--state-dir", str(tmp_path), "insmod", "-a", "300.1.1.1"])
    assert r.exit_code != 0 and "invalid IPv4 address '300.1.1.1'" in r.output
    r = runner.invoke(vn, ["--state-dir", str(tmp_path), "insmod", "-i", "nosuch0"])
    assert r.exit_code != 0 and "no IPv4 address on nosuch0" in r.output
    assert loads == []
    assert not (tmp_path / "state.sxp").exists() or "address" not in (tmp_path / "state.sxp").read_text()


def test_endpoint_messages_carry_every_kind_both_ways() -> None:
    """What endpoint_add sends names each kind's addresses only, in the uapi's enum
    order; an ENDPOINT_GET reply built from it reads back as the same endpoint, and its
    counters make vnetd's record (drops: the sum vnetd makes)."""
    assert [f"VNET_ENDPOINT_KIND_{k.upper().replace('-', '_')}" for k in kmod.ENDPOINT_KINDS] == \
        uapi_enum("vnet_endpoint_kind")
    assert [f"VNET_ENDPOINT_STATE_{s.upper()}" for s in kmod.ENDPOINT_STATES] == uapi_enum("vnet_endpoint_state")
    vid = VnetId.parse("97")
    for words in (["udp", "0.0.0.0:5001", "127.0.0.1:5002"], ["tcp-listen", "127.0.0.1:5003"],
                  ["tcp-connect", "192.0.2.7:5004"]):
        spec = EndpointSpec.parse(words)
        attrs = kmod.KmodClient._endpoint_attrs(vid, spec)
        assert {a[0] for a in attrs} == {"VNET_A_ID", "VNET_A_ENDPOINT_KIND"} | (
            {"VNET_A_ADDR", "VNET_A_PORT"} if spec.local else set()) | (
            {"VNET_A_REMOTE_ADDR", "VNET_A_REMOTE_PORT"} if spec.remote else set())
        counters = {"rx_packets": 5, "tx_packets": 6, "rx_bytes": 7, "tx_bytes": 8, "rx_foreign": 2,
                    "framing_errors": 1, "tx_busy": 3, "connects": 4}
        back = roundtrip(attrs + [["VNET_A_ENDPOINT_STATE", 1], ["VNET_A_COUNTERS", stats_nest(counters)]])
        assert kmod._endpoint_spec(back) == spec
        assert kmod.stat_values(back.get_attr("VNET_A_COUNTERS")) == counters
        assert records.endpoint_drops(counters) == 6


def test_module_depends_reads_modpost_list(tmp_path):
    """vnet.ko's .modinfo names the stock modules it needs (the ChaCha20-Poly1305
    library); `vn insmod` loads them first because finit_module does not."""
    ko = tmp_path / "vnet.ko"
    ko.write_bytes(b"\x7fELF junk\0license=GPL\0depends=libchacha20poly1305,udp_tunnel\0name=vnet\0")
    assert loader.module_depends(ko) == ["libchacha20poly1305", "udp_tunnel"]
    (tmp_path / "none.ko").write_bytes(b"\x7fELF\0depends=\0")
    assert loader.module_depends(tmp_path / "none.ko") == []
    assert loader.module_depends(tmp_path / "missing.ko") == []


def test_load_depends_loads_dependencies_first_and_names_the_missing(tmp_path, monkeypatch):
    ko = tmp_path / "vnet.ko"
    ko.write_bytes(b"\0depends=libchacha20poly1305,udp_tunnel,not_there\0")
    mods = tmp_path / "modules"
    mods.mkdir()
    (mods / "modules.dep").write_text(
        "kernel/lib/crypto/libchacha20poly1305.ko: kernel/lib/crypto/libpoly1305.ko "
        "kernel/arch/x86/crypto/chacha-x86_64.ko kernel/lib/crypto/libchacha.ko\n"
        "kernel/net/ipv4/udp_tunnel.ko:\n")
    sysmod = tmp_path / "sys_module"
    (sysmod / "udp_tunnel").mkdir(parents=True)  # already loaded: left alone
    (sysmod / "libpoly1305").mkdir()
    loaded: list[str] = []

    def finit(path, params):
        loaded.append(str(path.relative_to(mods)))
        (sysmod / loader._module_name(str(path))).mkdir()
        return 0

    monkeypatch.setattr(loader, "_finit", finit)
    missing = loader.load_depends(ko, modules=mods, sys_module=sysmod)
    assert missing == ["not_there"]
    # modules.dep's last dependency loads first; loaded ones are skipped.
    assert loaded == ["kernel/lib/crypto/libchacha.ko", "kernel/arch/x86/crypto/chacha-x86_64.ko",
                      "kernel/lib/crypto/libchacha20poly1305.ko"]
