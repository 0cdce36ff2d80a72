"""Parser for Xen's S-expression dialect (the syntax of `libxutil/sxpr_parser.c`).

Design notes:

* Tokens are found by one compiled regular expression driven by
  ``finditer``.  That keeps the per-character work inside the regex engine,
  which is what makes a 10 MB input parse in a couple of seconds in pure
  Python, and it makes the running time linear (possessive quantifiers stop
  the string pattern from backtracking on unterminated strings).
* Nesting is tracked with an explicit stack, never with recursion, so that
  hostile input such as 100000 opening parentheses cannot raise
  ``RecursionError``.
* The C parser, not the lenient Python one, is the model: unknown escapes
  are errors rather than silently keeping the backslash, because the kernel
  module and vnetd would reject such input and we want to find out early.
* Line and column numbers are only computed when an error is raised.
* Ctrl-D (0x04) ends the input wherever a token may end, including right
  after an atom ("abc\x04" is the atom "abc"); inside a quoted string it is
  ordinary data.  Treating it as an end marker rather than atom text is the
  safer reading for input typed at a terminal.
"""

from __future__ import annotations

import gc
import os
import re
from collections import deque
from itertools import islice

from .errors import SxpError, position
from .value import Value

# Characters that may start an atom (reference section 3.1).  '<' is absent
# because in C it opens a data block, which we reject explicitly.
_ATOM_START = r"A-Za-z0-9!$%&*+,\-./:;=>?@^_`{|}~"
# Characters that end an atom: whitespace, comment start, separators, quotes,
# plus NUL (always an error) and Ctrl-D (end of input).
_ATOM_STOP = r" \t\n\r\f#{}()<>\[\]!;\"'\x00\x04"


def _string_body(delim: str) -> str:
    """Pattern for the inside of a string; every backslash must be followed
    by some character so that a trailing backslash cannot swallow the
    closing delimiter."""
    plain = rf"[^{delim}\\\x00]*+"
    return rf"{plain}(?:\\[^\x00]{plain})*+"


_DQ_BODY = _string_body('"')
_SQ_BODY = _string_body("'")

_TOKEN = re.compile(
    r"(?:[ \t\n\r\f]++|#[^\n\x00]*+)++"  # whitespace and comments: no group
    r"|(?:"
    r"(\(\))"  # 1: an empty list, one match instead of two
    r"|(\(++)"  # 2: open one or more lists
    r"|(\)++)"  # 3: close one or more lists
    rf"|([{_ATOM_START}][^{_ATOM_STOP}]*+)"  # 4: atom
    rf'|"({_DQ_BODY})"'  # 5: double-quoted string
    rf"|'({_SQ_BODY})'"  # 6: single-quoted string
    r"|([\s\S])"  # 7: anything else, diagnosed in bad_char
    # Spaces after a token join its match: half as many matches to loop over.
    r")[ \t\n\r\f]*+"
)
_EMPTY, _OPEN, _CLOSE, _ATOM, _DQ, _SQ, _OTHER = range(1, 8)

_BODY_PREFIX = {'"': re.compile(_DQ_BODY), "'": re.compile(_SQ_BODY)}

_ESCAPE = re.compile(
    r"\\(?:"
    r"([abfnrtv\\'\"])"  # 1: single-character escape
    r"|x([0-9A-Fa-f]{1,2})"  # 2: hex escape
    r"|([0-7]{1,3})"  # 3: octal escape
    r"|([\s\S])"  # 4: anything else is invalid
    r")"
)
_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
    "v": "\v", "\\": "\\", "'": "'", '"': '"',
}
_VALID_ESCAPES = r"\a \b \f \n \r \t \v \\ \' \" \xHH \OOO"

_EOT = "\x04"


class _Reader:
    """One parse of one text; holds what error reporting needs."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def error(self, offset: int, message: str) -> SxpError:
        line, column = position(self.text, offset)
        return SxpError(message, self.source, line, column)

    def run(self) -> tuple[list[Value], list[int]]:
        """Parse everything; also return the offset where each top-level
        value starts, so that parse_one can point at a surplus value.

        The cyclic garbage collector is paused meanwhile: building millions
        of lists would otherwise trigger repeated collections that only
        re-scan the new, necessarily live, tree (about half the run time).
        """
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if enabled:
                gc.enable()

    def _run(self) -> tuple[list[Value], list[int]]:
        top: list[Value] = []
        starts: list[int] = []
        current = top
        parents: list[list] = []  # enclosing lists of `current`, outermost first
        # Offsets of the '(' of the open lists, innermost last; a run of '('
        # is kept as one range so that it costs no per-list int objects.
        opens: list[int | range] = []
        for match in _TOKEN.finditer(self.text):
            kind = match.lastindex
            if kind is None:
                continue
            if current is top and kind != _CLOSE and kind != _OTHER:
                starts.append(match.start())
            if kind == _ATOM:
                current.append(match.group(_ATOM))
            elif kind == _EMPTY:
                current.append([])
            elif kind == _OPEN:
                # A run of '(' is one match: pathological inputs such as
                # megabytes of '(' then cost one regex step, not millions.
                start, end = match.span(_OPEN)
                if end - start == 1:
                    child: list[Value] = []
                    current.append(child)
                    parents.append(current)
                    opens.append(start)
                    current = child
                    continue
                chain: list[list] = [[] for _ in range(end - start)]
                current.append(chain[0])
                # Link each new list into the previous one at C speed.
                deque(map(list.append, chain, islice(chain, 1, None)), maxlen=0)
                parents.append(current)
                parents.extend(chain)
                current = parents.pop()
                opens.append(range(start, end))
            elif kind == _CLOSE:
                start, end = match.span(_CLOSE)
                count = end - start
                if count > len(parents):
                    raise self.error(
                        start + len(parents),
                        "unexpected ')': no list is open here "
                        "(expected an atom, a string, '(' or end of input)",
                    )
                if count == 1:
                    current = parents.pop()
                    _drop_opens(opens, 1)
                else:
                    current = parents[-count]
                    del parents[-count:]
                    _drop_opens(opens, count)
            elif kind == _DQ or kind == _SQ:
                body = match.group(kind)
                if "\\" in body:
                    body = self.unescape(body, match.start(kind))
                current.append(body)
            else:
                if match.group(_OTHER) == _EOT:
                    break  # Ctrl-D at a token boundary ends the input
                self.bad_char(match.start())
        if parents:
            more = f" ({len(parents)} lists are open)" if len(parents) > 1 else ""
            innermost = opens[-1]
            if isinstance(innermost, range):
                innermost = innermost[-1]
            raise self.error(
                innermost,
                f"unclosed '(': expected ')' before end of input{more}",
            )
        return top, starts

    def unescape(self, body: str, offset: int) -> str:
        """Decode escapes; `offset` is where `body` starts in the text, so
        that a bad escape is reported at its own backslash."""

        def replace(m: re.Match) -> str:
            if m.group(1) is not None:
                return _SIMPLE_ESCAPES[m.group(1)]
            if m.group(2) is not None:
                return chr(int(m.group(2), 16))
            if m.group(3) is not None:
                value = int(m.group(3), 8)
                if value > 0xFF:
                    raise self.error(
                        offset + m.start(),
                        f"octal escape '\\{m.group(3)}' is out of range "
                        "(expected at most \\377)",
                    )
                return chr(value)
            if m.group(4) == "x":
                raise self.error(
                    offset + m.start(),
                    "invalid escape '\\x': expected 1 or 2 hex digits after it",
                )
            char = m.group(4)
            shown = f"'\\{char}'" if char.isprintable() else f"'\\' + U+{ord(char):04X}"
            raise self.error(
                offset + m.start(),
                f"invalid escape {shown} (expected one of {_VALID_ESCAPES})",
            )

        return _ESCAPE.sub(replace, body)

    def bad_char(self, offset: int) -> None:
        """Explain a character that cannot start a token.  Always raises."""
        text = self.text
        char = text[offset]
        if char == "\x00":
            raise self.error(offset, "NUL character in input")
        if char == "<":
            raise self.error(
                offset,
                "data blocks ('<...') are not supported: "
                "write the value as a quoted string",
            )
        if char in "\"'":
            self.bad_string(offset)
        raise self.error(
            offset,
            f"unexpected character {_show_char(char)}: expected an atom, "
            "a quoted string, '(' or ')' (quote values containing it)",
        )

    def bad_string(self, start: int) -> None:
        """A quote that did not begin a well-formed string.  Report the first
        problem in text order: a bad escape, a NUL, or a missing end quote."""
        text = self.text
        delim = text[start]
        end = _BODY_PREFIX[delim].match(text, start + 1).end()
        self.unescape(text[start + 1:end], start + 1)
        if end < len(text) and text[end] == "\x00":
            raise self.error(end, "NUL character in input")
        if end + 1 < len(text) and text[end] == "\\":
            raise self.error(end + 1, "NUL character in input")
        raise self.error(
            start,
            f"unterminated string: expected a closing {delim} before end of input",
        )


def _drop_opens(opens: list[int | range], count: int) -> None:
    """Forget the `count` innermost open-paren offsets (see _Reader._run)."""
    while count:
        last = opens[-1]
        if isinstance(last, int):
            opens.pop()
            count -= 1
        elif len(last) <= count:
            opens.pop()
            count -= len(last)
        else:
            opens[-1] = last[: len(last) - count]
            count = 0


def _show_char(char: str) -> str:
    """Render a character for an error message so that control characters
    and look-alikes are unambiguous."""
    if char.isprintable() and char != " ":
        if char.isascii():
            return f"'{char}'"
        return f"'{char}' (U+{ord(char):04X})"
    return f"U+{ord(char):04X}"


def parse(text: str, source: str = "<string>") -> list[Value]:
    """Parse every top-level value: config files and vnetd replies hold
    several forms one after another."""
    return _Reader(text, source).run()[0]


def parse_one(text: str, source: str = "<string>") -> Value:
    """Parse text that must hold exactly one value, e.g. a single command;
    anything more is reported rather than silently dropped."""
    reader = _Reader(text, source)
    values, starts = reader.run()
    if not values:
        raise reader.error(len(text), "expected a value, found end of input")
    if len(values) > 1:
        raise reader.error(
            starts[1], "expected end of input after the first value, found another value"
        )
    return values[0]


def parse_file(path: str | os.PathLike) -> list[Value]:
    """Parse a UTF-8 file.  Undecodable bytes become an SxpError that
    points at the bad byte, so a corrupt config file is reported like any
    other syntax error.  Errors opening or reading the file (OSError) are
    left alone: they already name the file and callers handle them apart."""
    source = os.fsdecode(path)
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        line, column = position(before, len(before))
        raise SxpError(
            f"invalid UTF-8 (byte 0x{data[exc.start]:02x})", source, line, column
        ) from None
    return parse(text, source)
