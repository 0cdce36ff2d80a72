"""The service manager's readiness protocol (sd_notify), client side, without libsystemd.

Under `Type=notify` systemd counts vnetd as started only when it says `READY=1`, so
units ordered after vnetd.service (libvirtd, xendomains) find the restored vnets'
bridges in place.  The protocol is one datagram of newline-separated `KEY=VALUE`
lines to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name
written with a leading `@`).  Without the variable there is no manager listening and
every call does nothing, so vnetd run by hand, by network-vnet or by the test lab is
unchanged.
"""
from __future__ import annotations

import os
import socket

from vnet.errors import DatapathError

ENV = "NOTIFY_SOCKET"


def _address(name: str) -> str | bytes:
    """The socket address `$NOTIFY_SOCKET` names: `@name` is the abstract `\\0name`."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    raise DatapathError("EAFNOSUPPORT", f"{ENV}={name}: not a Unix socket path or @abstract name")


def notify(**fields: str | int) -> bool:
    """Send `KEY=VALUE` lines, e.g. notify(READY=1, STATUS="..."); False if no manager
    listens (no `$NOTIFY_SOCKET`).  A manager that asked and cannot be told is an error:
    it would wait for READY=1 until its start timeout and then kill us."""
    name = os.environ.get(ENV)
    if not name:
        return False
    message = "".join(f"{key}={value}\n" for key, value in fields.items()).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.sendto(message, _address(name))
        except OSError as e:
            raise DatapathError.from_os_error(e, f"cannot notify the service manager on {name}") from None
    return True
