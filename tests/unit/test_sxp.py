"""Tests for the sxp package: syntax, printing layout, errors, scale."""

from __future__ import annotations

import random

import pytest

import sxp
from sxp import (
    SxpError,
    child_value,
    children,
    parse,
    parse_file,
    parse_one,
    pretty,
    show,
)

T9_RECORD = (
    "(vnet (id 0000:0000:0000:0000:0000:0000:0000:0097) "
    "(vnetif vnif97) (security none) (header 64))"
)
T9_PRETTY = (
    "(vnet\n"
    "    (id 0000:0000:0000:0000:0000:0000:0000:0097)\n"
    "    (vnetif vnif97)\n"
    "    (security none)\n"
    "    (header 64)\n"
    ")\n"
)


def error_of(text: str, source: str = "<string>") -> SxpError:
    with pytest.raises(SxpError) as info:
        parse(text, source)
    return info.value


def where(text: str) -> tuple[int, int]:
    err = error_of(text)
    return err.line, err.column


def deep_list(depth: int) -> list:
    """[[[...[]...]]] built without recursion."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nesting_depth(value: list) -> int:
    """Depth of a deep_list-shaped value, checked without recursion (== on
    very deep lists would itself hit the recursion limit)."""
    depth = 1
    while value:
        assert len(value) == 1
        value = value[0]
        depth += 1
    return depth


# ---------------------------------------------------------------- atoms


def test_atoms_and_lists():
    assert parse("(vnet.add (id 97) (vnetif vnif97))") == [
        ["vnet.add", ["id", "97"], ["vnetif", "vnif97"]]
    ]
    assert parse("a b\tc\nd\re\ff") == ["a", "b", "c", "d", "e", "f"]
    assert parse("") == []
    assert parse("  \n\t ") == []
    assert parse("()") == [[]]
    assert parse("(()())") == [[[], []]]
    assert parse("((a)(b))c") == [[["a"], ["b"]], "c"]


def test_atom_characters_from_reference_table():
    starts = "!$%&*+,-./:;=>?@^_`{|}~"
    for char in starts:
        assert parse(char + "x")[0].startswith(char), char
    assert parse("0x1F aa:00:00:11:00:12 10.0.0.1/24 -1 @") == [
        "0x1F", "aa:00:00:11:00:12", "10.0.0.1/24", "-1", "@",
    ]
    # Inside an atom anything but whitespace, '#' and separators continues it.
    assert parse("a$%&*+,-./:=?@^_`|~\\z") == ["a$%&*+,-./:=?@^_`|~\\z"]
    # Separators end an atom; those that may also start one then do so.
    assert parse("a!b") == ["a", "!b"]
    assert parse("a;b;;c") == ["a", ";b", ";", ";c"]
    assert parse("a{b}c") == ["a", "{b", "}c"]
    assert parse("a>b") == ["a", ">b"]
    assert parse("a(b)c") == ["a", ["b"], "c"]
    assert parse("a\"b\"c") == ["a", "b", "c"]
    assert parse("a'b'") == ["a", "b"]


def test_numbers_stay_atoms():
    assert parse("(header 64) (id 0x61)") == [["header", "64"], ["id", "0x61"]]


def test_comments():
    assert parse("# heading\n(a b) # trailing\n# last") == [["a", "b"]]
    assert parse("(a#comment ) still comment\nb)") == [["a", "b"]]
    assert parse("abc#def\nghi") == ["abc", "ghi"]
    assert parse('"not # a comment"') == ["not # a comment"]
    assert parse("#") == []


def test_ctrl_d_ends_input_at_token_boundary():
    assert parse("a \x04 b (") == ["a"]
    assert parse("(a)\x04)))") == [["a"]]
    assert parse("abc\x04def") == ["abc"]
    assert parse('"a\x04b"') == ["a\x04b"]  # inside a string it is data
    err = error_of("(a \x04 b)")
    assert (err.line, err.column) == (1, 1)
    assert "unclosed" in err.message


# ---------------------------------------------------------------- strings


def test_strings_both_quotes():
    assert parse('"hello world" \'single "q"\'') == ["hello world", 'single "q"']
    assert parse('""') == [""]
    assert parse("''") == [""]
    assert parse('"multi\nline"') == ["multi\nline"]
    assert parse('"(not a list)"') == ["(not a list)"]


@pytest.mark.parametrize(
    "escape, char",
    [
        ("\\a", "\a"), ("\\b", "\b"), ("\\f", "\f"), ("\\n", "\n"),
        ("\\r", "\r"), ("\\t", "\t"), ("\\v", "\v"), ("\\\\", "\\"),
        ("\\'", "'"), ('\\"', '"'),
        ("\\x41", "A"), ("\\x4", "\x04"), ("\\xff", "\xff"), ("\\xFe", "\xfe"),
        ("\\0", "\x00"), ("\\101", "A"), ("\\7", "\x07"), ("\\377", "\xff"),
        ("\\12", "\n"),
    ],
)
def test_escapes(escape, char):
    assert parse_one(f'"<{escape}>"') == f"<{char}>"
    assert parse_one(f"'<{escape}>'") == f"<{char}>"


def test_escape_digit_limits():
    assert parse_one('"\\x414"') == "A4"  # at most two hex digits
    assert parse_one('"\\1012"') == "A2"  # at most three octal digits
    assert parse_one('"\\18"') == "\x018"  # octal stops at a non-octal digit
    assert parse_one('"\\x4g"') == "\x04g"


def test_bad_escapes():
    err = error_of('(x "ab\\qc")')
    assert (err.line, err.column) == (1, 7)
    assert "invalid escape '\\q'" in err.message
    err = error_of('"\\x"')
    assert (err.line, err.column) == (1, 2)
    assert "hex digit" in err.message
    err = error_of('\n  "ok" "\\400"')
    assert (err.line, err.column) == (2, 9)
    assert "out of range" in err.message
    err = error_of('"\\8"')
    assert "invalid escape '\\8'" in err.message


def test_unterminated_string():
    err = error_of('(x\n  "abc\ndef)')
    assert (err.line, err.column) == (2, 3)
    assert "unterminated string" in err.message and '"' in err.message
    err = error_of("'abc\\'")
    assert (err.line, err.column) == (1, 1)
    assert "closing '" in err.message
    # a bad escape earlier in the text is reported first
    assert where('"a\\q') == (1, 3)


# ---------------------------------------------------------------- errors


def test_error_format():
    err = error_of("\n\n   )", "vnet97.sxp")
    assert isinstance(err, ValueError)
    assert (err.source, err.line, err.column) == ("vnet97.sxp", 3, 4)
    assert str(err) == f"vnet97.sxp:3:4: {err.message}"


def test_unbalanced_parens():
    err = error_of("(a b))")
    assert (err.line, err.column) == (1, 6)
    assert "')'" in err.message and "no list is open" in err.message
    assert where(")") == (1, 1)
    assert where("(a)\n (b)\n  )") == (3, 3)
    assert where("(a))))") == (1, 4)

    err = error_of("(a\n  (b c)\n")
    assert (err.line, err.column) == (1, 1)
    assert "unclosed '('" in err.message and "expected ')'" in err.message
    # the innermost unclosed list is reported
    assert where("(a\n (b\n  (c d)") == (2, 2)
    assert where("(((") == (1, 3)
    assert where("(x ((") == (1, 5)


def test_nul_is_an_error():
    assert where("(a\n b\0)") == (2, 3)
    assert where("\0") == (1, 1)
    assert where('(a "x\0y")') == (1, 6)
    assert where('"ab\\\0"') == (1, 5)
    assert where("# comment \0\n") == (1, 11)
    assert "NUL" in error_of("a\0").message


def test_data_blocks_are_rejected():
    err = error_of("(a <*3*abc)")
    assert (err.line, err.column) == (1, 4)
    assert "data block" in err.message
    assert where("\n<<X<data<X<") == (2, 1)
    assert where("abc<def") == (1, 4)


def test_invalid_characters():
    for text in ["[a]", "]", "\\x", "\x01", "\x0b", "é"]:
        err = error_of("  " + text)
        assert (err.line, err.column) == (1, 3), text
        assert "unexpected character" in err.message


def test_parse_one():
    assert parse_one("  (a b) # done\n") == ["a", "b"]
    assert parse_one("atom") == "atom"
    with pytest.raises(SxpError) as info:
        parse_one("  \n # nothing\n")
    assert "expected a value" in info.value.message
    assert (info.value.line, info.value.column) == (3, 1)
    with pytest.raises(SxpError) as info:
        parse_one("(a b)\n  (c)")
    assert (info.value.line, info.value.column) == (2, 3)
    with pytest.raises(SxpError):
        parse_one("(a")


def test_parse_file(tmp_path):
    path = tmp_path / "vnet97.sxp"
    path.write_text("# vnet 97\n(vnet (id 97) (bridge vnet97) (security none))\n")
    assert parse_file(path) == [["vnet", ["id", "97"], ["bridge", "vnet97"], ["security", "none"]]]
    assert parse_file(str(path)) == parse_file(path)

    path.write_text('(vnet (id "é ü"))', encoding="utf-8")
    assert parse_file(path) == [["vnet", ["id", "é ü"]]]

    path.write_text("(vnet\n  (id 97)))\n")
    with pytest.raises(SxpError) as info:
        parse_file(path)
    assert str(info.value).startswith(f"{path}:2:11: ")

    path.write_bytes(b"(a)\n(b \xff)\n")
    with pytest.raises(SxpError) as info:
        parse_file(path)
    assert (info.value.source, info.value.line, info.value.column) == (str(path), 2, 4)
    assert "UTF-8" in info.value.message


# ---------------------------------------------------------------- printing


def test_show_matches_vn_commands():
    assert show(["vnet.add", ["id", "97"], ["vnetif", "vnif97"]]) == (
        "(vnet.add (id 97) (vnetif vnif97))"
    )
    assert show(["vnet.del", ["id", "0000:0000:0000:0000:0000:0000:0000:0097"]]) == (
        "(vnet.del (id 0000:0000:0000:0000:0000:0000:0000:0097))"
    )
    assert show(["vif.add", ["vnet", "97"], ["vmac", "aa:00:00:11:00:12"]]) == (
        "(vif.add (vnet 97) (vmac aa:00:00:11:00:12))"
    )
    assert show(["varp.flush"]) == "(varp.flush)"
    assert show([]) == "()"
    assert show([[], [[]]]) == "(() (()))"
    assert show("vnif97") == "vnif97"


def test_show_quoting():
    assert show("") == '""'
    assert show("a b") == '"a b"'
    assert show("a\\b\"c'd") == '"a\\\\b\\"c\'d"'
    assert show("\n\t\r") == '"\\n\\t\\r"'
    assert show("\x00\x01\x04\x1f\x7f") == '"\\x00\\x01\\x04\\x1f\\x7f"'
    assert show("\x0b\x0c\x07") == '"\\x0b\\x0c\\x07"'
    assert show("\xa0\xad\x85") == '"\\xa0\\xad\\x85"'
    assert show("é") == '"é"'
    assert show("x#y") == '"x#y"'
    assert show("!") == '"!"'
    for atom in ["a", "A-Z_0.9", "/dev/net/tun", "aa:bb", "+", "@", "~x", "-"]:
        assert show(atom) == atom


def test_show_escapes_exactly_the_non_printables():
    """The printer's fast pre-filter must agree with str.isprintable."""
    for code in range(0x100):
        char = chr(code)
        shown = show("a " + char)
        if char == "\\":
            assert shown == '"a \\\\"'
        elif char == '"':
            assert shown == '"a \\""'
        elif char in "\n\t\r":
            assert shown == '"a ' + {"\n": "\\n", "\t": "\\t", "\r": "\\r"}[char] + '"'
        elif char.isprintable():
            assert shown == f'"a {char}"', hex(code)
        else:
            assert shown == f'"a \\x{code:02x}"', hex(code)


def test_show_rejects_other_types():
    with pytest.raises(TypeError):
        show(["a", 1])
    with pytest.raises(TypeError):
        pretty(["a", None])


def test_t9_rendering():
    record = parse_one(T9_RECORD)
    assert pretty(record, 50) == T9_PRETTY
    assert pretty(record, 80) == T9_PRETTY
    assert pretty(record) == T9_PRETTY
    assert pretty(record, len(T9_RECORD)) == T9_RECORD + "\n"
    assert pretty(record, 1000) == T9_RECORD + "\n"


def test_pretty_layout_details():
    # The first element follows "(" directly, even when it is itself a list
    # that has to be broken; it then starts one column in.
    value = [["aaaa", "bbbb", "cccc"], "dd"]
    assert pretty(value, 12) == (
        "((aaaa\n"
        "     bbbb\n"
        "     cccc\n"
        " )\n"
        "    dd\n"
        ")\n"
    )
    # A nested list that fits at its own column stays on one line.
    assert pretty(["varp", ["ip", "10.0.0.1"], ["mcaddr", "239.0.0.1"]], 22) == (
        "(varp\n    (ip 10.0.0.1)\n    (mcaddr 239.0.0.1)\n)\n"
    )
    # An empty list that does not fit still breaks before ")" as Xen did.
    assert pretty([], 1) == "(\n)\n"
    assert pretty(["a", []], 3) == "(a\n    (\n    )\n)\n"
    # Atoms are never broken, even when longer than the width.
    assert pretty(["x", "a" * 30], 10) == "(x\n    " + "a" * 30 + "\n)\n"
    assert pretty("atom") == "atom\n"
    assert pretty("") == '""\n'
    assert pretty(["a b", "c"], 5) == '("a b"\n    c\n)\n'


# An independent model of Xen's PrettyPrint (Oppen-style blocks, breaks that
# are either all taken or decided one at a time), written from its
# documented behaviour, to check the simpler rule used by sxp.pretty.


def _model_build(value):
    if not isinstance(value, list):
        return {"kind": "text", "text": show(value), "width": len(show(value))}
    items = [{"kind": "text", "text": "(", "width": 1}]
    for i, child in enumerate(value):
        if i:
            items.append({"kind": "break", "width": 1, "indent": 4})
        items.append(_model_build(child))
    items.append({"kind": "break", "width": 0, "indent": 0})
    items.append({"kind": "text", "text": ")", "width": 1})
    total = 0
    last_break, last_total = None, 0
    for item in items:
        if item["kind"] == "break":
            if last_break is not None:
                last_break["space"] = total - last_total
            last_break, last_total = item, total
        total += item["width"]
    last_break["space"] = total - last_total
    return {"kind": "block", "items": items, "width": total}


def _model_pretty(value, width):
    if not isinstance(value, list):
        return show(value) + "\n"
    out = []
    state = {"used": 0, "space": width}

    def emit(text):
        out.append(text)
        state["used"] += len(text)
        state["space"] = max(state["space"] - len(text), 0)

    def newline(indent):
        out.append("\n" + " " * indent)
        state["used"] = indent
        state["space"] = width - indent

    def run(block):
        indent = state["used"]
        broken = state["space"] - block["width"] < 0
        for item in block["items"]:
            if item["kind"] == "text":
                emit(item["text"])
            elif item["kind"] == "block":
                run(item)
            elif broken or state["space"] - item["space"] < 0:
                newline(indent + item["indent"])
            else:
                emit(" " * item["width"])

    run(_model_build(value))
    return "".join(out) + "\n"


# ---------------------------------------------------------------- random values

_ALPHABET = (
    list("abcXYZ019") + list("/._+:@~-") + list(" !#$%&'()*,;<=>?[]^`{|}\"\\")
    + ["\n", "\t", "\r", "\x00", "\x04", "\x07", "\x0b", "\x0c", "\x7f", "\x85", "\xa0", "\xad"]
    + ["é", "ß", "ÿ", "€", "\u2028", "\u200b", "\U0001f600", "\ud800", "中"]
)


def random_atom(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.1:
        return ""
    if roll < 0.5:
        return "".join(rng.choice("abcdefgh0123456789.:-") for _ in range(rng.randint(1, 12)))
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 10)))


def random_value(rng: random.Random, depth: int = 0):
    if depth > 6 or rng.random() < 0.35:
        return random_atom(rng)
    return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))]


@pytest.mark.parametrize("seed", range(8))
def test_round_trip_random_values(seed):
    rng = random.Random(seed)
    for _ in range(300):
        value = random_value(rng)
        assert parse_one(show(value)) == value
        for width in (0, 10, 50, 80):
            assert parse_one(pretty(value, width)) == value
        compact = show(value)
        assert "\n" not in compact
        assert parse(compact + " " + compact) == [value, value]


@pytest.mark.parametrize("seed", range(4))
def test_pretty_matches_xen_model(seed):
    rng = random.Random(1000 + seed)
    for _ in range(200):
        value = random_value(rng)
        width = rng.choice([0, 1, 5, 10, 20, 30, 50, 80, 120])
        assert pretty(value, width) == _model_pretty(value, width), (value, width)


def test_pretty_matches_xen_model_on_records():
    records = parse(
        T9_RECORD
        + "(varp (ip 192.0.2.1) (mcaddr 239.0.0.1) (port 1798) (encapsulation udp))"
        + "(ventry (vnet 0000:0000:0000:0000:0000:0000:0000:0097) (vmac aa:00:00:11:00:12)"
        + " (addr 192.0.2.2) (state VARP_STATE_REACHABLE) (flags 0) (timestamp 123))"
        + '(peer (addr 203.0.113.7) (tx 0) (rx 0) (note "some \\"quoted\\" text"))'
    )
    for record in records:
        for width in range(0, 130):
            assert pretty(record, width) == _model_pretty(record, width)


def test_round_trip_every_single_character():
    for code in list(range(1, 0x300)) + [0x2028, 0x200B, 0xD800, 0x1F600]:
        atom = chr(code)
        assert parse_one(show(atom)) == atom, hex(code)
        assert parse_one(show([atom, atom + "x", "x" + atom])) == [atom, atom + "x", "x" + atom]
    assert parse_one(show("\x00")) == "\x00"


# ---------------------------------------------------------------- access


def test_child_value_and_children():
    record = parse_one(
        "(vnet (@ (id 5)) (id 97) (vnetif vnif97) (id 98) atom () (security) (peer (@ x) 1.2.3.4))"
    )
    assert child_value(record, "id") == "97"  # first match wins
    assert child_value(record, "vnetif") == "vnif97"
    assert child_value(record, "security") is None  # field without a value
    assert child_value(record, "security", "none") == "none"
    assert child_value(record, "missing", "dflt") == "dflt"
    assert child_value(record, "peer") == "1.2.3.4"  # attributes skipped there too
    assert child_value(record, "@") is None  # the attribute list is not a field

    assert children(record) == [
        ["id", "97"], ["vnetif", "vnif97"], ["id", "98"], [], ["security"],
        ["peer", ["@", "x"], "1.2.3.4"],
    ]
    assert children(record, "id") == [["id", "97"], ["id", "98"]]
    assert children(record, "nope") == []

    # Without an attribute list, the second element is an ordinary child.
    plain = ["vnet", ["id", "1"], ["bridge", "br0"]]
    assert children(plain) == [["id", "1"], ["bridge", "br0"]]
    assert child_value(plain, "bridge") == "br0"
    # An (@ ...) list anywhere but second position is an ordinary child.
    late = ["vnet", ["id", "1"], ["@", "x"]]
    assert children(late, "@") == [["@", "x"]]
    assert child_value(late, "@") == "x"
    # The value may itself be a list.
    assert child_value(["r", ["k", ["a", "b"]]], "k") == ["a", "b"]

    assert children([]) == []
    assert children(["head"]) == []
    assert child_value([], "id", "d") == "d"
    assert child_value(["vnet", ["@"]], "id") is None


def test_public_api():
    assert set(sxp.__all__) == {
        "Value", "SxpError", "parse", "parse_one", "parse_file",
        "show", "pretty", "child_value", "children",
    }


# ---------------------------------------------------------------- scale

TEN_MB = 10 * 1024 * 1024
RECORD_LINE = (
    '(vnet (id 0000:0000:0000:0000:0000:0000:0000:0097) (vnetif "vnif 97") '
    "(security none) (header 64)) # comment\n"
)


def outcome(func, *args):
    """func(*args), or the SxpError it raised.  No time limit is asserted (these
    machines are too noisy for one): a parser that backtracked or copied its way to
    quadratic time on 10 MB would not finish, and the run's own timeout says so."""
    try:
        return func(*args)
    except SxpError as exc:
        return exc


def test_ten_megabytes_valid():
    count = TEN_MB // len(RECORD_LINE) + 1
    values = outcome(parse, RECORD_LINE * count)
    assert len(values) == count
    assert values[-1] == parse_one(RECORD_LINE)


@pytest.mark.parametrize(
    "text, line_column",
    [
        (RECORD_LINE * (TEN_MB // len(RECORD_LINE)) + ")", (TEN_MB // len(RECORD_LINE) + 1, 1)),
        ('(x "' + "abc\\n" * (TEN_MB // 5), (1, 4)),
        ("(" * TEN_MB, (1, TEN_MB)),
        ("a " * (TEN_MB // 2) + "\0", (1, TEN_MB + 1)),
    ],
    ids=["stray-paren", "unterminated-string", "all-open", "nul-at-end"],
)
def test_ten_megabytes_invalid(text, line_column):
    error = outcome(parse, text)
    assert isinstance(error, SxpError)
    assert (error.line, error.column) == line_column


def test_deep_nesting_parse_and_print():
    depth = 100_000
    text = "(" * depth + ")" * depth
    value = parse_one(text)
    assert nesting_depth(value) == depth
    assert show(value) == text
    assert show(deep_list(depth)) == text

    spaced = "( " * depth + "x" + " )" * depth
    value = parse_one(spaced)
    assert show(value) == "(" * depth + "x" + ")" * depth

    err = error_of("(" * depth)
    assert (err.line, err.column) == (1, depth)
    err = error_of("( " * depth + ")" * (depth + 1))
    assert (err.line, err.column) == (1, 2 * depth + depth + 1)


def test_deep_nesting_pretty():
    # Xen's layout puts every ")" of a broken list on its own line at the
    # list's column, so the output grows with depth squared; 3000 levels is
    # far beyond the recursion limit while keeping the output a few MB.
    depth = 3000
    text = pretty(deep_list(depth), 80)
    lines = text.splitlines()
    assert lines[0] == "(" * depth
    assert lines[1] == " " * (depth - 1) + ")"  # the innermost ()
    assert lines[-1] == ")"
    assert nesting_depth(parse_one(text)) == depth
    wide = pretty(deep_list(depth), 2 * depth)
    assert wide == "(" * depth + ")" * depth + "\n"
