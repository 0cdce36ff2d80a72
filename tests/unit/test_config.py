"""Vnet config records (reference 3.2, 8 #13/#14)."""
from pathlib import Path

import pytest

import sxp
from vnet.model.config import (
    ENCAPSULATIONS,
    SECURITY_LEVELS,
    ConfigError,
    VnetConfig,
    default_mtu,
    default_names,
    header_size,
)
from vnet.model.vnetid import VnetId

EXAMPLES = Path(__file__).resolve().parents[2] / "doc" / "examples"


def cfg(text, source="test.sxp"):
    return VnetConfig.from_sxp(sxp.parse_one(text, source), source)


def error(text, source="test.sxp"):
    with pytest.raises(ConfigError) as exc:
        cfg(text, source)
    msg = str(exc.value)
    assert msg.startswith(f"{source}: ")
    return msg


def test_default_names():
    assert default_names(VnetId.parse("97")) == ("vnet97", "vnif97")
    assert default_names(VnetId.parse("1500")) == ("vnet1500", "vnif1500")
    assert default_names(VnetId.parse("0a0b")) == ("vneta0b", "vnifa0b")
    # only the last field counts (reference 8 #13)
    assert default_names(VnetId.parse("aaff:0:0:0:0:0:77:88")) == ("vnet88", "vnif88")


def test_minimal_config_gets_defaults():
    c = cfg("(vnet (id 97))")
    assert c == VnetConfig(VnetId(0x97), "vnet97", "vnif97", "none", "udp")


def test_full_config():
    c = cfg("(vnet (id 0:0:0:0:0:0:0:98) (bridge br98) (vnetif vn98) (security auth) (encapsulation etherip))")
    assert c.id == VnetId(0x98)
    assert (c.bridge, c.vnetif, c.security, c.encapsulation) == ("br98", "vn98", "auth", "etherip")
    assert c.header == 100 and c.mtu == 1400  # a secure raw EtherIP vnet (doc/security.md)


def test_to_sxp_round_trip():
    c = cfg("(vnet (id 97) (security conf))")
    assert c.to_sxp() == [
        "vnet",
        ["id", "0000:0000:0000:0000:0000:0000:0000:0097"],
        ["bridge", "vnet97"],
        ["vnetif", "vnif97"],
        ["security", "conf"],
        ["encapsulation", "udp"],
    ]
    assert VnetConfig.from_sxp(c.to_sxp()) == c
    assert VnetConfig.from_sxp(sxp.parse_one(sxp.pretty(c.to_sxp()), "x")) == c


def test_field_order_free_and_hand_built_lists():
    c = VnetConfig.from_sxp(["vnet", ["security", "auth"], ["id", "97"]])
    assert c.security == "auth" and c.vnetif == "vnif97"


def test_header_and_mtu():
    assert header_size("udp") == 64
    assert header_size("etherip") == 52
    assert default_mtu("udp") == 1500
    assert default_mtu("etherip") == 1448
    with pytest.raises(ValueError):
        header_size("gre")
    with pytest.raises(ValueError):
        default_mtu("gre")
    assert SECURITY_LEVELS == ("none", "auth", "conf")
    assert ENCAPSULATIONS == ("udp", "etherip")


# --- errors -----------------------------------------------------------------


def test_not_a_vnet():
    assert "expected (vnet ...)" in error("(vnets (id 97))")
    assert "expected (vnet ...)" in error("vnet")
    assert "expected (vnet ...)" in error("()")
    with pytest.raises(ConfigError, match=r"^src: expected \(vnet \.\.\.\)"):
        VnetConfig.from_sxp("vnet", "src")


def test_missing_id():
    msg = error("(vnet (bridge vnet97))")
    assert "missing field 'id'" in msg


def test_field_twice():
    msg = error("(vnet (id 97) (bridge a) (bridge b))")
    assert "field 'bridge' given twice" in msg


def test_field_without_value():
    assert "field 'security' has no value" in error("(vnet (id 97) (security))")


def test_field_with_several_values():
    msg = error("(vnet (id 97) (bridge a b))")
    assert "field 'bridge' has 2 values" in msg


def test_field_value_is_list():
    assert "field 'bridge'" in error("(vnet (id 97) (bridge (a)))")


def test_stray_atom_and_empty_list():
    assert "fields are written (name value)" in error("(vnet foo (id 97))")
    assert "fields are written (name value)" in error("(vnet () (id 97))")


def test_bad_id_includes_vnetid_message():
    msg = error("(vnet (id 12345))")
    assert "field 'id'" in msg
    assert "a short id is 1 to 4 hex digits (e.g. 97)" in msg
    assert "field 'id'" in error("(vnet (id 1:2))")


def test_reserved_ids():
    assert "vnet id 0 is not valid" in error("(vnet (id 0))")
    assert "vnet id 1 is reserved for the physical network" in error("(vnet (id 1))")
    assert "reserved" in error("(vnet (id 0:0:0:0:0:0:0:1))")


def test_bad_security_lists_levels():
    msg = error("(vnet (id 97) (security high))")
    assert "field 'security'" in msg
    assert "'high'" in msg
    assert "none, auth, conf" in msg


def test_bad_encapsulation_lists_values():
    msg = error("(vnet (id 97) (encapsulation gre))")
    assert "field 'encapsulation'" in msg and "udp, etherip" in msg


def test_sixteen_char_names_rejected():
    msg = error("(vnet (id 97) (bridge abcdefghijklmnop))")
    assert "field 'bridge'" in msg and "16 characters" in msg and "at most 15" in msg
    msg = error("(vnet (id 97) (vnetif abcdefghijklmnop))")
    assert "field 'vnetif'" in msg and "16 characters" in msg
    # 15 is what the kernel accepts
    assert cfg("(vnet (id 97) (vnetif abcdefghijklmno))").vnetif == "abcdefghijklmno"


def test_bad_interface_characters():
    assert "field 'vnetif'" in error('(vnet (id 97) (vnetif "a b"))')
    assert "field 'bridge'" in error("(vnet (id 97) (bridge a/b))")


def test_bridge_equal_to_vnetif():
    assert "different names" in error("(vnet (id 97) (bridge x) (vnetif x))")


def test_unknown_field_suggests_vnetif():
    with pytest.raises(ConfigError) as exc:
        cfg("(vnet (id 99) (bridge vnet99) (vnif vnetif99) (security conf))", "vnet99.sxp")
    assert str(exc.value) == "vnet99.sxp: unknown field 'vnif' in (vnet ...); did you mean 'vnetif'?"


def test_unknown_field_without_close_match_lists_fields():
    msg = error("(vnet (id 97) (colour blue))")
    assert "unknown field 'colour'" in msg
    assert "id, bridge, vnetif, security, encapsulation" in msg


def test_misspelled_security():
    assert "did you mean 'security'?" in error("(vnet (id 97) (securty auth))")


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_constructor_validates():
    with pytest.raises(ConfigError):
        VnetConfig(VnetId(0x97), "vnet97", "vnif97", security="high")
    with pytest.raises(ConfigError):
        VnetConfig(VnetId(1), "vnet1", "vnif1")


# --- from_cli -----------------------------------------------------------------


def test_from_cli_defaults():
    assert VnetConfig.from_cli("97") == VnetConfig(VnetId(0x97), "vnet97", "vnif97")
    c = VnetConfig.from_cli("98", bridge="br", vnetif="vn", security="auth", encapsulation="etherip")
    assert (c.bridge, c.vnetif, c.security, c.encapsulation) == ("br", "vn", "auth", "etherip")


def test_from_cli_errors():
    with pytest.raises(ConfigError, match="a short id is 1 to 4 hex digits"):
        VnetConfig.from_cli("12345")
    with pytest.raises(ConfigError, match="reserved"):
        VnetConfig.from_cli("1")
    with pytest.raises(ConfigError, match="none, auth, conf"):
        VnetConfig.from_cli("97", security="max")
    with pytest.raises(ConfigError, match="16 characters"):
        VnetConfig.from_cli("97", vnetif="x" * 16)


# --- files ------------------------------------------------------------------


def test_shipped_examples_load():
    expected = {
        "vnet97.sxp": (0x97, "vnet97", "vnif97", "none"),
        "vnet98.sxp": (0x98, "vnet98", "vnif98", "none"),
        "vnet99.sxp": (0x99, "vnet99", "vnif99", "conf"),
    }
    for name, (vid, bridge, vnetif, security) in expected.items():
        path = EXAMPLES / name
        assert path.read_text().startswith("#")
        assert f"vn vnet-create doc/examples/{name}" in path.read_text()
        c = VnetConfig.from_file(path)
        assert c == VnetConfig(VnetId(vid), bridge, vnetif, security, "udp")


def test_from_file_original_vnet99_suggests_fix(tmp_path):
    path = tmp_path / "vnet99.sxp"
    path.write_text(
        "# Xen vnet 99\n(vnet (id 99) (bridge vnet99) (vnif vnetif99) (security conf))\n"
    )
    with pytest.raises(ConfigError) as exc:
        VnetConfig.from_file(path)
    assert str(exc.value) == f"{path}: unknown field 'vnif' in (vnet ...); did you mean 'vnetif'?"


def test_from_file_needs_exactly_one_vnet(tmp_path):
    empty = tmp_path / "empty.sxp"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match=r"empty\.sxp: expected exactly one \(vnet \.\.\.\)"):
        VnetConfig.from_file(empty)
    two = tmp_path / "two.sxp"
    two.write_text("(vnet (id 97))\n(vnet (id 98))\n")
    with pytest.raises(ConfigError, match=r"two\.sxp: .*found 2"):
        VnetConfig.from_file(two)


def test_from_file_syntax_error_names_file(tmp_path):
    bad = tmp_path / "bad.sxp"
    bad.write_text("(vnet (id 97)\n")
    with pytest.raises(ConfigError) as exc:
        VnetConfig.from_file(bad)
    assert str(bad) in str(exc.value)


def test_from_file_missing(tmp_path):
    with pytest.raises(ConfigError, match="missing.sxp"):
        VnetConfig.from_file(tmp_path / "missing.sxp")


# --- secure vnets: key files (doc/security.md) ----------------------------------------


def test_secure_header_and_mtu():
    assert header_size("udp", "conf") == 108 and default_mtu("udp", "conf") == 1500
    assert header_size("etherip", "auth") == 100 and default_mtu("etherip", "auth") == 1400


def test_key_files_one_or_two_send_key_first():
    c = cfg("(vnet (id 97) (security conf) (key-file /k/a.key /k/b.key))")
    assert c.key_files == ("/k/a.key", "/k/b.key")
    assert VnetConfig.from_sxp(c.to_sxp()) == c
    assert c.with_keys(("/k/b.key",)).key_files == ("/k/b.key",)
    assert cfg("(vnet (id 97) (security auth))").key_files == ()


def test_key_file_errors():
    assert "uses no key" in error("(vnet (id 97) (key-file /k/a.key))")
    assert "at most 2 keys" in error("(vnet (id 97) (security conf) (key-file /a /b /c))")
    assert "not an absolute path" in error("(vnet (id 97) (security conf) (key-file a.key))")
    assert "same file twice" in error("(vnet (id 97) (security conf) (key-file /a /a))")
    assert "given twice" in error("(vnet (id 97) (security conf) (key-file /a) (key-file /b))")


def test_key_file_relative_to_config_file(tmp_path):
    p = tmp_path / "vnet97.sxp"
    p.write_text("(vnet (id 97) (security conf) (key-file keys/97.key))\n")
    assert VnetConfig.from_file(p).key_files == (str(tmp_path / "keys" / "97.key"),)


# --- ports, MTU and (bridge none) (doc/ports.md) ----------------------------------------


def test_ports_mtu_and_no_bridge_round_trip():
    c = cfg("(vnet (id 97) (bridge none) (mtu 9000) (port r1-eth1) (port r2-eth1))")
    assert (c.bridge, c.mtu, c.ports, c.fragments) == (None, 9000, ("r1-eth1", "r2-eth1"), True)
    assert c.to_sxp()[2] == ["bridge", "none"] and ["mtu", "9000"] in c.to_sxp()
    assert [x for x in c.to_sxp() if x[0] == "port"] == [["port", "r1-eth1"], ["port", "r2-eth1"]]
    assert VnetConfig.from_sxp(c.to_sxp()) == c
    assert VnetConfig.from_cli("97", bridge="none", mtu=9000, ports=("r1-eth1", "r2-eth1")) == c
    assert c.with_ports(("x",)).ports == ("x",)


def test_default_mtu_is_a_field_and_not_written():
    for text, mtu in (("(vnet (id 97))", 1500), ("(vnet (id 97) (encapsulation etherip))", 1448),
                      ("(vnet (id 97) (encapsulation etherip) (security auth) (key-file /k))", 1400)):
        c = cfg(text)
        assert c.mtu == mtu and not c.fragments and not any(x[0] == "mtu" for x in c.to_sxp())
    c = cfg("(vnet (id 97) (mtu 1500))")
    assert c == cfg("(vnet (id 97))")
    assert cfg("(vnet (id 97) (encapsulation etherip) (mtu 1500))").fragments
    assert not cfg("(vnet (id 97) (mtu 1280))").fragments


def test_mtu_and_port_errors():
    for value in ("67", "65001", "0", "-5"):
        assert f"field 'mtu': {value} is out of range; a vnet's MTU is 68 to 65000" in \
            error(f"(vnet (id 97) (mtu {value}))")
    assert "field 'mtu': 'big' is not a number" in error("(vnet (id 97) (mtu big))")
    assert "given twice" in error("(vnet (id 97) (mtu 9000) (mtu 1500))")
    assert "field 'port' names r1 twice" in error("(vnet (id 97) (port r1) (port r1))")
    assert "vnif97 is the vnet's vnetif" in error("(vnet (id 97) (port vnif97))")
    assert "vnet97 is the vnet's bridge" in error("(vnet (id 97) (port vnet97))")
    assert "contains '/'" in error("(vnet (id 97) (port a/b))")
    assert "has no value" in error("(vnet (id 97) (port))")
    with pytest.raises(ConfigError, match="68 to 65000"):
        VnetConfig.from_cli("97", mtu=70000)
    with pytest.raises(ConfigError, match="68 to 65000"):
        VnetConfig(VnetId.parse("97"), "vnet97", "vnif97", mtu=True)


def test_differences_count_mtu_and_ports_only_when_asked():
    plain, big = cfg("(vnet (id 97))"), cfg("(vnet (id 97) (mtu 9000))")
    assert plain.differences(big) == ["mtu 1500 (not 9000)"]
    ported = cfg("(vnet (id 97) (port r1))")
    assert plain.differences(ported) == ["port - (not r1)"]
    assert plain.differences(ported, ports=False) == []


# --- socket endpoints (doc/endpoints.md) -----------------------------------------------


def test_endpoints_round_trip_in_order():
    c = cfg("(vnet (id 97) (endpoint udp 127.0.0.1:5000 127.0.0.1:5001) (port r1)"
            " (endpoint tcp-connect 10.0.0.2:6000) (endpoint tcp-listen 0.0.0.0:6000))")
    assert [str(e) for e in c.endpoints] == ["udp 127.0.0.1:5000 127.0.0.1:5001", "tcp-connect 10.0.0.2:6000",
                                             "tcp-listen 0.0.0.0:6000"]
    assert [x for x in c.to_sxp() if x[0] == "endpoint"] == [
        ["endpoint", "udp", "127.0.0.1:5000", "127.0.0.1:5001"], ["endpoint", "tcp-connect", "10.0.0.2:6000"],
        ["endpoint", "tcp-listen", "0.0.0.0:6000"]]
    assert VnetConfig.from_sxp(c.to_sxp()) == c
    assert VnetConfig.from_cli("97", ports=("r1",), endpoints=(
        "udp 127.0.0.1:5000 127.0.0.1:5001", "tcp-connect 10.0.0.2:6000", "tcp-listen 0.0.0.0:6000")) == c
    assert c.with_endpoints(()).endpoints == () and not any(x[0] == "endpoint" for x in cfg("(vnet (id 97))").to_sxp())


def test_endpoint_errors():
    assert ("field 'endpoint': endpoint udp takes 2 addresses (LOCAL REMOTE), got 1"
            in error("(vnet (id 97) (endpoint udp 127.0.0.1:5000))"))
    assert "field 'endpoint': endpoint kind 'mcast' is unknown" in error("(vnet (id 97) (endpoint mcast 239.0.0.1:5))")
    assert "has no value" in error("(vnet (id 97) (endpoint))")
    assert "is given twice" in error("(vnet (id 97) (endpoint tcp-listen 127.0.0.1:5) (endpoint tcp-listen 127.0.0.1:5))")
    assert ("field 'endpoint': (tcp-listen 0.0.0.0:5) and (tcp-listen 127.0.0.1:5) bind the same tcp port 5"
            in error("(vnet (id 97) (endpoint tcp-listen 127.0.0.1:5) (endpoint tcp-listen 0.0.0.0:5))"))
    # One protocol each: a udp and a tcp endpoint may share a port number.
    cfg("(vnet (id 97) (endpoint tcp-listen 127.0.0.1:5) (endpoint udp 127.0.0.1:5 127.0.0.1:6))")
    with pytest.raises(ConfigError, match="field 'endpoint': endpoint udp: REMOTE '127.0.0.1:0'"):
        VnetConfig.from_cli("97", endpoints=("udp 127.0.0.1:5 127.0.0.1:0",))


def test_differences_count_endpoints_only_when_asked():
    plain, ep = cfg("(vnet (id 97))"), cfg("(vnet (id 97) (endpoint tcp-listen 127.0.0.1:5))")
    assert plain.differences(ep) == ["endpoint - (not (tcp-listen 127.0.0.1:5))"]
    assert plain.differences(ep, endpoints=False) == []


def test_own_group_round_trip_and_written_only_when_given():
    c = cfg("(vnet (id 97) (group 239.1.0.97))")
    assert c.group == "239.1.0.97" and c.to_sxp()[-1] == ["group", "239.1.0.97"]
    assert VnetConfig.from_sxp(c.to_sxp()) == c == VnetConfig.from_cli("97", group="239.1.0.97")
    assert cfg("(vnet (id 97))").group is None
    assert not any(x[0] == "group" for x in cfg("(vnet (id 97))").to_sxp())
    assert cfg("(vnet (id 97))").differences(c) == ["group - (not 239.1.0.97)"]


def test_own_group_errors():
    assert "field 'group': 10.1.2.3 is not an IPv4 multicast address (224.0.0.0/4)" in \
        error("(vnet (id 97) (group 10.1.2.3))")
    assert "field 'group': 240.0.0.1 is not an IPv4 multicast address" in error("(vnet (id 97) (group 240.0.0.1))")
    for linklocal in ("224.0.0.1", "224.0.0.251"):
        assert f"field 'group': {linklocal} is in 224.0.0.0/24" in error(f"(vnet (id 97) (group {linklocal}))")
    assert "field 'group': invalid IPv4 address 'x'" in error("(vnet (id 97) (group x))")
    assert "field 'group': write '239.1.1' as 239.1.1.0" in error("(vnet (id 97) (group 239.1.1))")
    assert "given twice" in error("(vnet (id 97) (group 239.1.0.1) (group 239.1.0.2))")
    with pytest.raises(ConfigError, match="field 'group'"):
        VnetConfig.from_cli("97", group="ff02::1")
    assert cfg("(vnet (id 97) (group 224.0.1.0))").group == "224.0.1.0"
