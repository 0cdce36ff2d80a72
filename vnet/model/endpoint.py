"""Socket endpoints of a vnet: `(endpoint KIND ADDRESS...)`, a VM's QEMU socket NIC.

An endpoint is a socket of ours that speaks QEMU's socket NIC framing
(`vnet.wire.qemu`) with one VM; doc/endpoints.md gives the QEMU, libvirt and Vagrant
lines that match each kind.  Addresses are always written from *our* side:

    (endpoint udp LOCAL:PORT REMOTE:PORT)  we bind LOCAL:PORT and send to the VM's
                                           REMOTE:PORT; datagrams from anyone else
                                           are dropped
    (endpoint tcp-listen ADDR:PORT)        we listen; the VM's QEMU connects
    (endpoint tcp-connect ADDR:PORT)       the VM's QEMU listens; we connect, and
                                           connect again whenever the link drops

Addresses are IPv4 literals (no names: a config must not hang on DNS), ports 1..65535
(the VM must be told ours, so there is no "any port").  Multicast (`-netdev
socket,mcast=`, libvirt `type='mcast'`) is refused: a multicast group has no single
peer, and every member gets its own frames back (doc/endpoints.md says more).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vnet.errors import VnetError

from .addr import AddressError, is_multicast_ipv4, parse_ipv4

__all__ = ["KINDS", "EndpointError", "EndpointSpec", "parse_hostport"]

#: The kinds, in the order doc/endpoints.md lists them.
KINDS = ("udp", "tcp-listen", "tcp-connect")

_SYNTAX = {
    "udp": "(endpoint udp LOCAL:PORT REMOTE:PORT)",
    "tcp-listen": "(endpoint tcp-listen ADDR:PORT)",
    "tcp-connect": "(endpoint tcp-connect ADDR:PORT)",
}
#: The words after the kind, named as errors name them.
_FIELDS = {"udp": ("LOCAL", "REMOTE"), "tcp-listen": ("ADDR",), "tcp-connect": ("ADDR",)}


class EndpointError(VnetError, ValueError):
    """An endpoint that cannot be used; the message names the field and the fault."""


def parse_hostport(text: str, field: str, *, peer: bool) -> tuple[str, int]:
    """`A.B.C.D:PORT` as (dotted quad, port).  `peer`: an address we send or connect
    to, which must be one host's (not 0.0.0.0, broadcast or multicast); else an
    address we bind, where 0.0.0.0 means every local address."""
    if not isinstance(text, str):
        raise EndpointError(f"{field} must be a word ADDR:PORT, not a list")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise EndpointError(f"{field} {text!r} is not ADDR:PORT (e.g. 127.0.0.1:5000)")
    try:
        addr = parse_ipv4(host)
    except AddressError as e:
        raise EndpointError(f"{field} {text!r}: {e}") from None
    if not port_text.isdigit():
        raise EndpointError(f"{field} {text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise EndpointError(f"{field} {text!r}: port {port} is out of range 1..65535")
    if peer:
        if addr == "0.0.0.0":
            raise EndpointError(f"{field} {text!r}: 0.0.0.0 is no one's address; name the VM's host")
        if addr == "255.255.255.255":
            raise EndpointError(f"{field} {text!r}: a broadcast address is not one VM")
        if is_multicast_ipv4(addr):
            raise EndpointError(
                f"{field} {text!r}: multicast endpoints are not supported (every member of the "
                "group gets its own frames back; use udp or tcp, see doc/endpoints.md)")
    elif is_multicast_ipv4(addr):
        raise EndpointError(f"{field} {text!r}: cannot bind a multicast address")
    return addr, port


@dataclass(frozen=True)
class EndpointSpec:
    """What `(endpoint ...)` says.  `local` is the address we bind (udp, tcp-listen),
    `remote` the VM's QEMU address we send or connect to (udp, tcp-connect)."""

    kind: str
    local: tuple[str, int] | None = None
    remote: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EndpointError(_bad_kind(self.kind))
        want_local = self.kind in ("udp", "tcp-listen")
        want_remote = self.kind in ("udp", "tcp-connect")
        if (self.local is not None) != want_local or (self.remote is not None) != want_remote:
            raise EndpointError(f"endpoint {self.kind} is written {_SYNTAX[self.kind]}")

    @classmethod
    def parse(cls, words: Sequence[object]) -> EndpointSpec:
        """From the words after `endpoint`: `["udp", "127.0.0.1:5000", "127.0.0.1:5001"]`."""
        if not words:
            raise EndpointError("endpoint has no kind; write one of " + ", ".join(_SYNTAX.values()))
        kind = words[0]
        if not isinstance(kind, str) or kind not in KINDS:
            raise EndpointError(_bad_kind(kind))
        args = list(words[1:])
        names = _FIELDS[kind]
        if len(args) != len(names):
            raise EndpointError(
                f"endpoint {kind} takes {len(names)} address{'es' if len(names) > 1 else ''} "
                f"({' '.join(names)}), got {len(args)}: write {_SYNTAX[kind]}")
        where = f"endpoint {kind}: "
        if kind == "udp":
            local = parse_hostport(args[0], where + "LOCAL", peer=False)  # type: ignore[arg-type]
            remote = parse_hostport(args[1], where + "REMOTE", peer=True)  # type: ignore[arg-type]
            if local == remote:
                raise EndpointError(f"{where}LOCAL and REMOTE are the same socket {args[0]}: "
                                    "the VM needs a port of its own")
            return cls(kind, local=local, remote=remote)
        if kind == "tcp-listen":
            return cls(kind, local=parse_hostport(args[0], where + "ADDR", peer=False))  # type: ignore[arg-type]
        return cls(kind, remote=parse_hostport(args[0], where + "ADDR", peer=True))  # type: ignore[arg-type]

    @classmethod
    def from_sxp(cls, value: object) -> EndpointSpec:
        """From a parsed `(endpoint KIND ADDRESS...)`."""
        if not isinstance(value, list) or not value or value[0] != "endpoint":
            raise EndpointError(f"expected (endpoint KIND ADDRESS...), got {value!r}")
        return cls.parse(value[1:])

    def words(self) -> list[str]:
        out = [self.kind]
        if self.local is not None:
            out.append(_hostport(self.local))
        if self.remote is not None:
            out.append(_hostport(self.remote))
        return out

    def to_sxp(self) -> list:
        return ["endpoint", *self.words()]

    def __str__(self) -> str:
        return " ".join(self.words())

    @property
    def protocol(self) -> str:
        """The socket's protocol: `udp` or `tcp`."""
        return "udp" if self.kind == "udp" else "tcp"

    @property
    def bound(self) -> tuple[str, str, int] | None:
        """(protocol, address, port) this endpoint binds, if any: two endpoints of a host
        cannot bind the same one (0.0.0.0 overlaps every address)."""
        if self.local is None:
            return None
        return (self.protocol, *self.local)

    def clashes(self, other: EndpointSpec) -> bool:
        """True if both bind the same port of one protocol on overlapping addresses."""
        a, b = self.bound, other.bound
        if a is None or b is None or a[0] != b[0] or a[2] != b[2]:
            return False
        return a[1] == b[1] or "0.0.0.0" in (a[1], b[1])


def _hostport(hp: tuple[str, int]) -> str:
    return f"{hp[0]}:{hp[1]}"


def _bad_kind(kind: object) -> str:
    return (f"endpoint kind {kind!r} is unknown: expected one of {', '.join(KINDS)}"
            + (" (multicast is not supported: see doc/endpoints.md)" if kind == "mcast" else ""))
