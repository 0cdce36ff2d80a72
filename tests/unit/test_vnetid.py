"""Vnet id parsing and formatting (reference 1.1, test vectors T1)."""
import pytest

from vnet.model.addr import (
    format_mac,
    ifname_check,
    is_multicast_ipv4,
    parse_ipv4,
    parse_mac,
)
from vnet.model.vnetid import PHYSICAL_VNET, InvalidVnetId, VnetId, check_usable

LONG_EXAMPLE = "0000:0000:0000:0000:0000:0000:0000:0097"


@pytest.mark.parametrize(
    "text, wire",
    [
        ("97", "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 97"),
        ("1500", "00 00 00 00 00 00 00 00 00 00 00 00 00 00 15 00"),
        ("aaff:0:0:0:0:0:77:88", "aa ff 00 00 00 00 00 00 00 00 00 00 00 77 00 88"),
    ],
)
def test_t1_wire_bytes(text, wire):
    vid = VnetId.parse(text)
    assert vid.packed == bytes.fromhex(wire)
    assert VnetId.from_bytes(vid.packed) == vid


@pytest.mark.parametrize("text", ["1:2", "12345"])
def test_t1_rejected(text):
    with pytest.raises(InvalidVnetId):
        VnetId.parse(text)


def test_short_form_is_hex():
    assert VnetId.parse("97").value == 0x97
    assert VnetId.parse("1500").value == 0x1500
    assert VnetId.parse("beef") == VnetId.parse("BEEF") == VnetId(0xBEEF)


def test_long_form_printing():
    vid = VnetId.parse("97")
    assert str(vid) == LONG_EXAMPLE
    assert len(str(vid)) == 39
    assert str(VnetId.parse("AAFF:0:0:0:0:0:77:88")) == "aaff:0000:0000:0000:0000:0000:0077:0088"


def test_long_and_short_forms_agree():
    assert VnetId.parse(LONG_EXAMPLE) == VnetId.parse("97")
    assert VnetId.parse("0:0:0:0:0:0:0:97") == VnetId.parse("97")


def test_empty_fields_are_zero_not_compression():
    assert VnetId.parse(":::::::97") == VnetId(0x97)
    assert VnetId.parse(":::::::") == VnetId(0)
    with pytest.raises(InvalidVnetId):
        VnetId.parse("::97")  # IPv6-style shorthand is not a thing here


def test_whitespace_stripped():
    assert VnetId.parse("  97\n") == VnetId(0x97)


def test_short_property():
    assert VnetId.parse("97").short == "97"
    assert VnetId.parse("0097").short == "97"
    assert VnetId.parse("1500").short == "1500"
    assert VnetId.parse("aaff:0:0:0:0:0:77:88").short is None
    assert VnetId.parse("0:0:0:0:0:0:1:0").short is None


def test_last_field():
    assert VnetId.parse("aaff:0:0:0:0:0:77:88").last_field == 0x88
    assert VnetId.parse("1500").last_field == 0x1500


@pytest.mark.parametrize(
    "value", [0, 1, 0x97, 0xFFFF, 0x10000, (1 << 128) - 1, 0xAAFF_0000_0000_0000_0000_0000_0077_0088]
)
def test_round_trips(value):
    vid = VnetId(value)
    assert VnetId.parse(str(vid)) == vid
    assert VnetId.from_bytes(vid.packed) == vid
    if vid.short is not None:
        assert VnetId.parse(vid.short) == vid


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "12345",
        "0x97",
        "g",
        "-1",
        "+97",
        "9 7",
        "1:2",
        "0:0:0:0:0:0:0",
        "0:0:0:0:0:0:0:0:1",  # the module ignored extras; we reject
        "0:0:0:0:0:0:0:12345",
        "0:0:0:0:0:0:0:0x1",
        "0:0:0:0:0:0:0: 1",
        "97_",
        "٩٧",  # non-ASCII digits are not hex digits
    ],
)
def test_invalid_ids_explain_valid_forms(text):
    with pytest.raises(InvalidVnetId) as exc:
        VnetId.parse(text)
    msg = str(exc.value)
    assert msg.startswith("invalid vnet id ")
    assert "(e.g. 97)" in msg
    assert LONG_EXAMPLE in msg


def test_error_message_exact_for_too_long_short_form():
    with pytest.raises(InvalidVnetId) as exc:
        VnetId.parse("12345")
    assert str(exc.value) == (
        "invalid vnet id '12345': a short id is 1 to 4 hex digits (e.g. 97); "
        "the long form is 8 colon-separated fields of up to 4 hex digits "
        "(e.g. 0000:0000:0000:0000:0000:0000:0000:0097)"
    )


def test_error_message_says_what_is_wrong():
    with pytest.raises(InvalidVnetId, match="2 colon-separated fields"):
        VnetId.parse("1:2")
    with pytest.raises(InvalidVnetId, match="9 colon-separated fields"):
        VnetId.parse("0:0:0:0:0:0:0:0:1")
    with pytest.raises(InvalidVnetId, match="'x' is not a hex digit"):
        VnetId.parse("0x97")
    with pytest.raises(InvalidVnetId, match="field 8"):
        VnetId.parse("0:0:0:0:0:0:0:12345")
    with pytest.raises(InvalidVnetId, match="empty"):
        VnetId.parse("")


def test_invalid_id_is_value_error():
    assert issubclass(InvalidVnetId, ValueError)


def test_ordering_and_hashing():
    a, b = VnetId.parse("97"), VnetId.parse("98")
    assert a < b
    assert sorted([b, a]) == [a, b]
    assert {a: 1}[VnetId(0x97)] == 1


def test_value_range_and_type():
    with pytest.raises(InvalidVnetId):
        VnetId(-1)
    with pytest.raises(InvalidVnetId):
        VnetId(1 << 128)
    with pytest.raises(TypeError):
        VnetId("97")  # type: ignore[arg-type]
    with pytest.raises(InvalidVnetId):
        VnetId.from_bytes(b"\x00" * 15)


def test_frozen():
    vid = VnetId(0x97)
    with pytest.raises(AttributeError):
        vid.value = 3  # type: ignore[misc]


def test_check_usable():
    assert PHYSICAL_VNET == VnetId(1)
    with pytest.raises(InvalidVnetId, match="vnet id 0 is not valid"):
        check_usable(VnetId(0))
    with pytest.raises(InvalidVnetId, match="vnet id 1 is reserved for the physical network"):
        check_usable(PHYSICAL_VNET)
    assert check_usable(VnetId(2)) == VnetId(2)


# --- vnet.addr ---------------------------------------------------------------


def test_parse_mac():
    assert parse_mac("aa:00:00:11:00:12") == bytes.fromhex("aa0000110012")
    assert parse_mac("AA-00-00-11-00-12") == bytes.fromhex("aa0000110012")
    assert format_mac(parse_mac("AA-00-00-11-00-12")) == "aa:00:00:11:00:12"


@pytest.mark.parametrize(
    "text",
    ["", "aa:00:00:11:00", "aa:00:00:11:00:12:13", "aa:00-00:11:00:12", "a:00:00:11:00:123",
     "aa.00.00.11.00.12", "gg:00:00:11:00:12", "aa0000110012"],
)
def test_parse_mac_rejects(text):
    with pytest.raises(ValueError, match="expected six hex pairs like aa:00:00:11:00:12"):
        parse_mac(text)


@pytest.mark.parametrize(
    "text, expect",
    [
        ("192.0.2.1", "192.0.2.1"),
        ("10.1", "10.1.0.0"),
        ("10", "10.0.0.0"),
        ("10..1", "10.0.1.0"),
        ("0xe0.0x0a.0.1", "224.10.0.1"),
        ("010.0.0.1", "10.0.0.1"),  # leading zero is still decimal
    ],
)
def test_parse_ipv4(text, expect):
    assert parse_ipv4(text) == expect


@pytest.mark.parametrize("text", ["", "1.2.3.4.5", "256.0.0.1", "0x100.0.0.1", "a.b.c.d", "1.2.3.-4", "0x"])
def test_parse_ipv4_rejects(text):
    with pytest.raises(ValueError, match="invalid IPv4 address"):
        parse_ipv4(text)


def test_is_multicast():
    assert is_multicast_ipv4("224.10.0.1")
    assert is_multicast_ipv4("239.255.255.255")
    assert not is_multicast_ipv4("192.0.2.1")
    assert not is_multicast_ipv4("240.0.0.1")


def test_ifname_check():
    assert ifname_check("vnif97", "vnetif name") == "vnif97"
    assert ifname_check("a" * 15, "vnetif name") == "a" * 15
    with pytest.raises(ValueError) as exc:
        ifname_check("b" * 16, "bridge name")
    assert str(exc.value) == (
        f"bridge name '{'b' * 16}' is 16 characters; Linux interface names are at most 15"
    )
    for bad in ["", ".", "..", "a/b", "a b", "a:b", "a\tb", "a\0b"]:
        with pytest.raises(ValueError, match="vnetif name"):
            ifname_check(bad, "vnetif name")
