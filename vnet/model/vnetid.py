"""Vnet ids: 128-bit numbers naming a private LAN, in the Xen text forms.

The text syntax follows the Xen kernel module (``VnetId_aton``) because that
is what users type and what old configs contain:

* short form: one field of 1-4 hex digits with no colon, meaning the *last*
  16-bit field (``97`` is 0x0097, not decimal 97);
* long form: exactly 8 colon-separated fields of 0-4 hex digits, an empty
  field meaning 0 (``::`` is *not* IPv6-style compression).

We are stricter than the module in two places, both on purpose: more than 8
fields is an error (the module silently dropped the extras, so a typo named a
different vnet), and the empty string is an error (the module read it as id
0, which is not a usable vnet).  A ``0x`` prefix is rejected because the
module rejects it and accepting it would suggest the short form is decimal
otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

from vnet.errors import VnetError

__all__ = [
    "InvalidVnetId",
    "VnetId",
    "PHYSICAL_VNET",
    "check_usable",
]

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_FIELDS = 8
_FIELD_DIGITS = 4
_MAX = (1 << 128) - 1

_SHORT_HINT = "a short id is 1 to 4 hex digits (e.g. 97)"
_LONG_HINT = (
    "the long form is 8 colon-separated fields of up to 4 hex digits "
    "(e.g. 0000:0000:0000:0000:0000:0000:0000:0097)"
)


class InvalidVnetId(VnetError, ValueError):
    """A vnet id that cannot be used; the message is meant for the end user."""


def _invalid(text: str, problem: str = "") -> InvalidVnetId:
    # Every message repeats the valid forms: the short form being hex is the
    # single most common surprise, so we show it even when the problem is
    # elsewhere.
    lead = f"{problem}; " if problem else ""
    return InvalidVnetId(f"invalid vnet id {text!r}: {lead}{_SHORT_HINT}; {_LONG_HINT}")


def _bad_char(field: str) -> str | None:
    for ch in field:
        if ch not in _HEX_DIGITS:
            return ch
    return None


@dataclass(frozen=True, order=True, repr=False)
class VnetId:
    """A 128-bit vnet id; ordering and hashing follow the numeric value."""

    value: int

    def __post_init__(self) -> None:
        # bool is an int subclass; VnetId(True) is certainly a mistake.
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise TypeError(f"VnetId value must be an int, not {type(self.value).__name__}")
        if not 0 <= self.value <= _MAX:
            raise InvalidVnetId(f"vnet id {self.value:#x} is outside 0..2**128-1")

    @classmethod
    def parse(cls, text: str) -> VnetId:
        """Parse the short or long text form (see the module docstring)."""
        if not isinstance(text, str):
            raise TypeError(f"vnet id text must be a str, not {type(text).__name__}")
        text = text.strip()
        if not text:
            raise _invalid(text, "it is empty")
        if ":" not in text:
            bad = _bad_char(text)
            if bad is not None:
                raise _invalid(text, f"{bad!r} is not a hex digit")
            if len(text) > _FIELD_DIGITS:
                raise _invalid(text)
            return cls(int(text, 16))
        fields = text.split(":")
        if len(fields) != _FIELDS:
            raise _invalid(text, f"it has {len(fields)} colon-separated fields, not 8")
        value = 0
        for n, field in enumerate(fields, 1):
            bad = _bad_char(field)
            if bad is not None:
                raise _invalid(text, f"field {n} ({field!r}): {bad!r} is not a hex digit")
            if len(field) > _FIELD_DIGITS:
                raise _invalid(text, f"field {n} ({field!r}) has more than 4 hex digits")
            value = (value << 16) | (int(field, 16) if field else 0)
        return cls(value)

    @classmethod
    def from_bytes(cls, data: bytes) -> VnetId:
        """Decode the 16-byte network-order form used on the wire."""
        if len(data) != 16:
            raise InvalidVnetId(f"a packed vnet id is 16 bytes, got {len(data)}")
        return cls(int.from_bytes(data, "big"))

    @property
    def packed(self) -> bytes:
        """16 bytes, network order, as carried in VARP and EtherIP headers."""
        return self.value.to_bytes(16, "big")

    @property
    def fields(self) -> tuple[int, ...]:
        """The eight 16-bit fields, most significant first."""
        return tuple((self.value >> (16 * (7 - i))) & 0xFFFF for i in range(_FIELDS))

    @property
    def last_field(self) -> int:
        """The last 16-bit field; default interface names are built from it."""
        return self.value & 0xFFFF

    @property
    def short(self) -> str | None:
        """The short form (``97``), or None if the id does not fit one field."""
        if self.value >> 16:
            return None
        return f"{self.value:x}"

    def __str__(self) -> str:
        # The 39-character form the module prints and `vn` matches against;
        # always this form so ids compare equal as text too.
        return ":".join(f"{f:04x}" for f in self.fields)

    def __repr__(self) -> str:
        return f"VnetId({self.value:#x})"


PHYSICAL_VNET = VnetId(1)
"""Reserved by the module for "the physical network"; never a private LAN."""


def check_usable(vid: VnetId) -> VnetId:
    """Reject ids that parse but cannot name a private LAN; returns ``vid``."""
    if vid.value == 0:
        raise InvalidVnetId("vnet id 0 is not valid")
    if vid == PHYSICAL_VNET:
        raise InvalidVnetId("vnet id 1 is reserved for the physical network")
    return vid
