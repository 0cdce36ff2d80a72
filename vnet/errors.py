"""The product's errors: every failure a user can act on is a `VnetError`.

The command-line tools print a `VnetError` as one line (`vn: <message>`, exit 1) and
let anything else end in a traceback, because anything else is a bug.  So code that
meets an OSError or a bad value on behalf of a user (a file, an address, a reply from
the kernel) turns it into a `VnetError` there, with the words that say what is wrong
and where.
"""
from __future__ import annotations

import errno


class VnetError(Exception):
    """An error to report to the user; its message says what and where."""

    #: The errno name a control-socket reply carries for it.
    code = "EINVAL"

    @property
    def message(self) -> str:
        return str(self)


class DatapathError(VnetError):
    """A failed datapath operation: `code` is an errno name such as 'EEXIST'."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def from_os_error(cls, exc: OSError, what: str) -> DatapathError:
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        return cls(name, f"{what}: {exc.strerror or exc}")
