"""The single exception type of the sxp package.

It lives in its own module so that the parser and the file reader can both
raise it without importing each other.
"""

from __future__ import annotations


class SxpError(ValueError):
    """A syntax or decoding error, located the way compilers locate them.

    The position is kept in separate attributes (not only in the message) so
    that tools such as an editor integration or a config validator can point
    at the offending character without re-parsing the text of the message.
    Lines and columns are 1-based and columns count characters, not bytes,
    because that is what editors show.
    """

    def __init__(self, message: str, source: str, line: int, column: int) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        super().__init__(f"{source}:{line}:{column}: {message}")

    def __reduce__(self):  # keep the exception picklable despite the custom __init__
        return (type(self), (self.message, self.source, self.line, self.column))


def position(text: str, offset: int) -> tuple[int, int]:
    """Turn a character offset into a 1-based (line, column) pair.

    Only called when an error is raised, so an O(n) scan is acceptable and
    keeps the hot parsing loop free of line bookkeeping.
    """
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column
