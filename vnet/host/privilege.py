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


def in_user_namespace() -> bool:
    """Whether this process runs in a user namespace other than the host's (`unshare
    -Ur`, a rootless container): its root is not the host's root, which is worth
    saying when it is refused what it would be allowed as the host's root."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


#: Said after a refusal of what root may do, to root of a user namespace.
NOT_HOST_ROOT = "root in a user namespace is not root of the host"
#: Said after the module's refusal, to root of a user namespace (GENL_UNS_ADMIN_PERM).
MODULE_NOT_OWNED = ("root in a user namespace has it only for the network namespaces "
                    "its user namespace owns")


def user_namespace_note(note: str = NOT_HOST_ROOT) -> str:
    """"; `note`" when this process is root of a user namespace, else nothing."""
    return f"; {note}" if os.geteuid() == 0 and in_user_namespace() else ""


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
