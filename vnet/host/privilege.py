"""Whether this process may change the host's network: root, or the capabilities.

vnetd and `network-vnet start` ask before they touch anything, so that a user who
runs them unprivileged reads one line saying what they need, not a traceback from
the first socket the kernel refuses (or, for network-vnet, a fallback from the
module to a vnetd that cannot start either).  The capabilities are the effective
set of /proc/self/status, which is what the kernel checks (root in a container may
lack them; a service may hold them without being root).
"""
from __future__ import annotations

import os

from vnet.errors import DatapathError

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_NET_RAW: "CAP_NET_RAW"}


def effective_capabilities() -> int | None:
    """The effective capability set as a bit mask, or None if the kernel does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def require(what: str, *caps: int) -> None:
    """Refuse, in one line, unless this process holds every one of `caps`."""
    held = effective_capabilities()
    if held is None:
        return  # no /proc: let the kernel answer
    missing = [NAMES[c] for c in caps if not held >> c & 1]
    if not missing:
        return
    wanted = " and ".join(NAMES[c] for c in caps)
    if os.geteuid() == 0:
        raise DatapathError("EPERM", f"{what} needs {wanted}, which this root process lacks "
                            f"({', '.join(missing)})")
    raise DatapathError("EPERM", f"{what} needs root (or {wanted})")
