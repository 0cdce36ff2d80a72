"""Xen's S-expression dialect (SXP): parsing, printing and field access.

Values are plain Python data so that callers can build and compare them
without wrapper types: an atom or a quoted string is a ``str`` (the syntax
distinction is not kept, as in Xen's Python tools), and a list is a ``list``.
"""

from .access import child_value, children
from .errors import SxpError
from .parser import parse, parse_file, parse_one
from .printer import pretty, show
from .value import Value

__all__ = [
    "Value",
    "SxpError",
    "parse",
    "parse_one",
    "parse_file",
    "show",
    "pretty",
    "child_value",
    "children",
]
