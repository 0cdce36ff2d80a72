"""Printers: the compact form written to the module/vnetd, and the
pretty-printed form that `vn` shows to people.

Both walk the value with an explicit stack so that arbitrarily deep values
print without ``RecursionError``, and both quote atoms the same way so that
whatever they produce parses back to the same value.
"""

from __future__ import annotations

import re
from typing import Iterator

from .value import Value

# The C printer's bare-atom alphabet (reference 3.1).  Every character in it
# is also legal inside an atom for the parser, which is what makes bare
# output safe to read back.
_BARE = re.compile(r"[A-Za-z0-9/._+:@~-]+")

_NAMED = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape_char(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    if ord(char) <= 0xFF and not char.isprintable():
        # Always two digits: a following hex digit must not join the escape.
        return f"\\x{ord(char):02x}"
    # Non-printable characters above 0xff have no escape in this syntax;
    # the parser accepts them raw inside quotes, so emit them as they are.
    return char


# Characters that quote_atom must rewrite: the named ones, and anything
# non-printable up to 0xff.  Space is printable and stays as is.
_NEEDS_ESCAPE = re.compile(r'[\\"\x00-\x1f\x7f-\xa0\xad]')


def quote_atom(atom: str) -> str:
    """Write an atom bare when the C printer would, else as a double-quoted
    string; the empty string must be quoted or it would vanish."""
    if not isinstance(atom, str):
        raise TypeError(f"sxp values are str or list, not {type(atom).__name__}")
    if _BARE.fullmatch(atom):
        return atom
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _escape_char(m.group()), atom) + '"'


def show(value: Value) -> str:
    """Compact single-line form, as written to /proc/vnet/policy or vnetd."""
    if not isinstance(value, list):
        return quote_atom(value)
    parts = ["("]
    stack: list[Iterator[Value]] = [iter(value)]
    first = True
    while stack:
        for item in stack[-1]:
            if not first:
                parts.append(" ")
            if isinstance(item, list):
                parts.append("(")
                stack.append(iter(item))
                first = True
                break
            parts.append(quote_atom(item))
            first = False
        else:
            stack.pop()
            parts.append(")")
            first = False
    return "".join(parts)


def _flat_widths(value: list) -> dict[int, int]:
    """Length of show(x) for every list x inside value, keyed by id().

    Computed bottom-up in one pass, so that deciding whether each nested
    list fits costs O(1) rather than re-rendering it (which would make deep
    values quadratic).  Lists are mutable and may be shared; keying by id
    is still right because a shared list has one width.
    """
    widths: dict[int, int] = {}
    stack: list[tuple[list, bool]] = [(value, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in widths:
            continue
        if not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in node if isinstance(c, list))
            continue
        total = 1 + max(len(node) - 1, 0) + 1  # parentheses and spaces
        for child in node:
            total += widths[id(child)] if isinstance(child, list) else len(quote_atom(child))
        widths[id(node)] = total
    return widths


def pretty(value: Value, width: int = 80) -> str:
    """Lay a value out like Xen's PrettyPrint.prettyprint (what `vn` prints).

    Xen's printer (Oppen-style blocks with "all or nothing" breaks) reduces
    to this rule: a list whose one-line form fits between its start column
    and `width` is printed on one line; otherwise its first element follows
    "(" directly, every further element goes on its own line indented four
    columns past the "(", and ")" goes on its own line under the "(".
    Always ends with a newline, as Xen's ``print >> out`` did.
    """
    if not isinstance(value, list):
        return quote_atom(value) + "\n"
    widths = _flat_widths(value)
    parts: list[str] = []
    # Frames of lists being printed broken: (children iterator, column of "(").
    stack: list[tuple[Iterator[Value], int]] = []

    def place(node: Value, column: int) -> None:
        if not isinstance(node, list):
            parts.append(quote_atom(node))
        elif column + widths[id(node)] <= width:
            parts.append(show(node))
        else:
            parts.append("(")
            stack.append((iter(node), column))

    place(value, 0)
    # Children of a broken list after the first: the first one is placed as
    # soon as the frame is entered, at column + 1.
    first = bool(stack)
    while stack:
        children, column = stack[-1]
        child = next(children, _END)
        if child is _END:
            stack.pop()
            parts.append("\n" + " " * column + ")")
            first = False
            continue
        if first:
            depth = len(stack)
            place(child, column + 1)
        else:
            parts.append("\n" + " " * (column + 4))
            depth = len(stack)
            place(child, column + 4)
        first = len(stack) > depth
    parts.append("\n")
    return "".join(parts)


_END = object()
