"""The value type shared by the parser, the printers and the accessors.

Plain ``str`` and ``list`` rather than wrapper classes, so callers can
build commands with literals and compare parse results with ``==``.
Atoms and quoted strings both become ``str``: like Xen's Python tools we
do not keep the distinction, and the printers quote whenever needed.
"""

from typing import Union

Value = Union[str, list]
