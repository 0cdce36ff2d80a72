"""Parsing of MAC addresses, IPv4 addresses and interface names.

The accepted syntax matches the Xen module's value parsers so that commands
and config files written for the original keep working, but every rejection
says what was expected instead of the module's bare EINVAL.
"""
from __future__ import annotations

import ipaddress

from vnet.errors import VnetError

__all__ = [
    "AddressError",
    "IFNAMSIZ",
    "parse_mac",
    "format_mac",
    "parse_ipv4",
    "is_multicast_ipv4",
    "is_host_ipv4",
    "IPV6_UNSUPPORTED",
    "ifname_check",
]

class AddressError(VnetError, ValueError):
    """A MAC address, IPv4 address or interface name that cannot be used."""


#: What an IPv6 address gets wherever vnet wants an underlay (IPv4) address.
IPV6_UNSUPPORTED = "IPv6 underlays are not supported yet"

IFNAMSIZ = 16
"""Linux's buffer size for interface names, including the trailing NUL."""

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_DEC_DIGITS = frozenset("0123456789")


def parse_mac(text: str) -> bytes:
    """Parse ``aa:00:00:11:00:12`` or ``aa-00-00-11-00-12`` into 6 bytes.

    The module insists on two digits per group and one separator throughout;
    we keep that so a MAC accepted here is accepted by any peer too.
    """
    stripped = text.strip() if isinstance(text, str) else text
    error = AddressError(
        f"invalid MAC address {text!r}: expected six hex pairs like aa:00:00:11:00:12"
    )
    if not isinstance(stripped, str) or len(stripped) != 17:
        raise error
    sep = stripped[2]
    if sep not in ":-":
        raise error
    groups = stripped.split(sep)
    if len(groups) != 6:
        raise error
    for group in groups:
        if len(group) != 2 or not set(group) <= _HEX_DIGITS:
            raise error
    return bytes(int(g, 16) for g in groups)


def format_mac(b: bytes) -> str:
    """Lowercase colon form, as the module prints ``(vmac ...)``."""
    if len(b) != 6:
        raise AddressError(f"a MAC address is 6 bytes, got {len(b)}")
    return ":".join(f"{x:02x}" for x in b)


def _ipv4_part(text: str, n: int, part: str) -> int:
    def bad(why: str) -> AddressError:
        return AddressError(
            f"invalid IPv4 address {text!r}: part {n} ({part!r}) {why}; "
            "expected dotted decimal like 192.0.2.1"
        )

    if part == "":
        return 0  # the module counts an empty part as 0 ("10..1" = 10.0.1.0)
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if not digits or not set(digits) <= _HEX_DIGITS:
            raise bad("is not a hex number")
        value = int(digits, 16)
    elif set(part) <= _DEC_DIGITS:
        # A leading 0 is still decimal (module behaviour), unlike inet_aton.
        value = int(part, 10)
    else:
        raise bad("is not a number")
    if value > 255:
        raise bad("is more than 255")
    return value


def parse_ipv4(text: str) -> str:
    """Parse an IPv4 address with the module's rules; return the dotted quad.

    Up to 4 parts, decimal or ``0x`` hex, each at most 255, filling bytes from
    the most significant one, so ``10.1`` is 10.1.0.0.  Names are not
    resolved: that is the caller's job, and silently doing DNS here would hide
    slow or failing lookups inside config parsing.
    """
    if not isinstance(text, str):
        raise TypeError(f"IPv4 address must be a str, not {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise AddressError("invalid IPv4 address '': it is empty; expected dotted decimal like 192.0.2.1")
    if _is_ipv6(stripped):
        raise AddressError(f"{text} is an IPv6 address: {IPV6_UNSUPPORTED}")
    parts = stripped.split(".")
    if len(parts) > 4:
        raise AddressError(
            f"invalid IPv4 address {text!r}: it has {len(parts)} parts, at most 4 are allowed; "
            "expected dotted decimal like 192.0.2.1"
        )
    octets = [_ipv4_part(text, n, p) for n, p in enumerate(parts, 1)]
    octets += [0] * (4 - len(octets))
    return ".".join(str(o) for o in octets)


def _is_ipv6(text: str) -> bool:
    """True for an IPv6 address, with or without a zone (``fe80::1%eth0``)."""
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def is_multicast_ipv4(addr: str) -> bool:
    """True for 224.0.0.0/4, the range the vnet flood group must come from."""
    first = int(parse_ipv4(addr).split(".", 1)[0])
    return 224 <= first <= 239


def is_host_ipv4(addr: str) -> bool:
    """True for an address a host can have: not 0/8, loopback, multicast or broadcast.
    A VARP announce naming anything else would send frames nowhere, or back to us."""
    first = int(addr.split(".", 1)[0])
    return first not in (0, 127) and first < 224


def ifname_check(name: str, what: str) -> str:
    """Reject names Linux would refuse, before any device is touched.

    Checking up front gives a message naming the config field instead of a
    netlink error halfway through creating a vnet.  The limit is 15 (what the
    kernel accepts), not the 14 the Xen docs claimed.  Returns ``name``.
    """
    if not isinstance(name, str) or name == "":
        raise AddressError(f"{what} is empty; give an interface name of 1 to 15 characters")
    if len(name) > IFNAMSIZ - 1:
        raise AddressError(
            f"{what} {name!r} is {len(name)} characters; "
            f"Linux interface names are at most {IFNAMSIZ - 1}"
        )
    if name in (".", ".."):
        raise AddressError(f"{what} {name!r} is not allowed as a Linux interface name")
    for ch in name:
        if ch == "/" or ch == ":" or ch == "\0" or ch.isspace():
            raise AddressError(
                f"{what} {name!r} contains {ch!r}; Linux interface names cannot contain "
                "'/', ':', whitespace or NUL"
            )
    return name
