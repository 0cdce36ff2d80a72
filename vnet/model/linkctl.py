"""Link control of a port: suspension and impairments (doc/ports.md, "Link control").

A port's link control acts on the frames the datapath sends OUT of the port (towards
the node behind it): "direction a->b" of a lab link is the port of end b.  Suspension
stops the port both ways.  The config writes it inside the port's field,
``(port veth1 (loss 10) (delay 50) (jitter 5) (corrupt 0.1) (rate 10mbit) (suspended yes))``,
every option optional; `vn port-set` changes it live (Controller.set_port_link).

This module only holds and checks the settings; vnetd applies them in its own
datapath (vnet.datapath.vnetd.linkctl), the kernel module in its own (kmod/linkctl.c).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Optional

__all__ = ["LinkControl", "LinkError", "OPTIONS", "parse_rate", "format_rate", "NO_LINK"]

#: The options of `(port IFNAME OPTION...)`, in the order they are written.
OPTIONS = ("loss", "delay", "jitter", "corrupt", "rate", "suspended")
#: The largest delay or jitter: a minute is far beyond any lab link, and a typo
#: (`--delay 50000`) should not hold frames for hours.
MAX_DELAY_MS = 60_000.0
#: Rates: 8 kbit/s (one 1500-byte frame in 1.5 s) to 100 Gbit/s.
MIN_RATE, MAX_RATE = 8_000, 100_000_000_000
_RATE = re.compile(r"(\d+(?:\.\d+)?)([kmgt]?)(bit|bps)?", re.IGNORECASE)
_RATE_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "t": 1_000_000_000_000}


class LinkError(ValueError):
    """A link control option that cannot be used; the message names it and its value."""


def _number(name: str, text: str, unit: str, high: float) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise LinkError(f"{name} {text!r} is not a number ({unit})") from None
    if value != value or not 0 <= value <= high:  # NaN too
        raise LinkError(f"{name} {text!r} is out of range: 0 to {high:g} {unit}")
    return value


def parse_rate(text: str) -> int:
    """A rate as tc writes it, in bits per second: `10mbit`, `512kbit`, `1gbit`, `1000000`
    (bit/s); `bps` is bytes per second as in tc (`1mbps` = 8 Mbit/s)."""
    m = _RATE.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise LinkError(f"rate {text!r} is not a rate; write it as tc does: 10mbit, 512kbit, 1gbit")
    value = float(m.group(1)) * _RATE_UNITS[m.group(2).lower()]
    if (m.group(3) or "").lower() == "bps":
        value *= 8
    bits = int(round(value))
    if not MIN_RATE <= bits <= MAX_RATE:
        raise LinkError(f"rate {text!r} is out of range: 8kbit to 100gbit")
    return bits


def format_rate(bits: int) -> str:
    """The shortest exact tc form of a rate: 10000000 is `10mbit`."""
    for unit, scale in (("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1_000)):
        if bits % scale == 0:
            return f"{bits // scale}{unit}"
    return f"{bits}bit"


def _show(value: float) -> str:
    """A number as the config writes it: `10`, `0.5`."""
    return f"{value:g}" if value != int(value) else str(int(value))


@dataclass(frozen=True)
class LinkControl:
    """A port's link control; the default (every field 0/None/False) is none at all.
    loss and corrupt are percent of frames, delay and jitter milliseconds (each frame
    waits a time drawn uniformly from [delay - jitter, delay + jitter], at least 0),
    rate bits per second (None: unlimited)."""

    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    corrupt: float = 0.0
    rate: Optional[int] = None
    suspended: bool = False

    def __post_init__(self) -> None:
        for name, high, unit in (("loss", 100.0, "percent"), ("corrupt", 100.0, "percent"),
                                 ("delay", MAX_DELAY_MS, "ms"), ("jitter", MAX_DELAY_MS, "ms")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise LinkError(f"{name} must be a number, not {type(value).__name__}")
            _number(name, str(value), unit, high)
            object.__setattr__(self, name, float(value))
        if self.rate is not None and (isinstance(self.rate, bool) or not isinstance(self.rate, int)
                                      or not MIN_RATE <= self.rate <= MAX_RATE):
            raise LinkError(f"rate {self.rate!r} is out of range: 8kbit to 100gbit")
        if not isinstance(self.suspended, bool):
            raise LinkError(f"suspended must be yes or no, not {self.suspended!r}")

    @property
    def impaired(self) -> bool:
        """True if any impairment is set (suspension aside)."""
        return bool(self.loss or self.delay or self.jitter or self.corrupt or self.rate)

    @property
    def active(self) -> bool:
        """True if the port is impaired or suspended: the datapath has work to do."""
        return self.impaired or self.suspended

    def cleared(self) -> LinkControl:
        """No impairment, the suspension kept (`vn port-set --clear`)."""
        return LinkControl(suspended=self.suspended)

    def changed(self, **options: Optional[str]) -> LinkControl:
        """This link control with the options given as text (`vn port-set`, the command
        language): a number for loss, delay, jitter and corrupt, a tc rate for rate,
        yes/no for suspended; 0 or `none` removes an impairment.  None leaves an option
        as it is.  Raises LinkError naming the option and value."""
        values: dict[str, object] = {}
        for name, text in options.items():
            if text is None:
                continue
            if name not in OPTIONS:
                raise LinkError(f"unknown link option {name!r}; the options are {', '.join(OPTIONS)}")
            values[name] = _parse(name, text)
        return dataclasses.replace(self, **values)

    @classmethod
    def from_sxp(cls, options: list) -> LinkControl:
        """From the `(NAME VALUE)` options after a port's name; each at most once."""
        seen: dict[str, str] = {}
        for opt in options:
            if (not isinstance(opt, list) or len(opt) != 2 or not all(isinstance(o, str) for o in opt)):
                raise LinkError(f"expected (OPTION VALUE) with OPTION one of {', '.join(OPTIONS)}, "
                                f"got {_text(opt)}")
            name, value = opt
            if name not in OPTIONS:
                raise LinkError(f"unknown link option {name!r}; the options are {', '.join(OPTIONS)}")
            if name in seen:
                raise LinkError(f"link option {name!r} given twice")
            seen[name] = value
        return cls().changed(**seen)

    def to_sxp(self) -> list:
        """The options set, as `(NAME VALUE)` lists in OPTIONS order (none: empty)."""
        out: list = []
        for name in ("loss", "delay", "jitter", "corrupt"):
            value = getattr(self, name)
            if value:
                out.append([name, _show(value)])
        if self.rate is not None:
            out.append(["rate", format_rate(self.rate)])
        if self.suspended:
            out.append(["suspended", "yes"])
        return out

    def to_json(self) -> dict:
        """The options set, for `--json` listings: numbers, the rate in bit/s."""
        out: dict = {name: getattr(self, name) for name in ("loss", "delay", "jitter", "corrupt")
                     if getattr(self, name)}
        if self.rate is not None:
            out["rate"] = self.rate
        out["suspended"] = self.suspended
        return out

    def __str__(self) -> str:
        words = [f"{o[0]} {o[1]}" for o in self.to_sxp() if o[0] != "suspended"]
        if self.suspended:
            words.insert(0, "suspended")
        return ", ".join(words) or "none"


def _parse(name: str, text: str) -> object:
    if not isinstance(text, str):
        raise LinkError(f"{name} must be a word, not {_text(text)}")
    if name == "suspended":
        if text not in ("yes", "no"):
            raise LinkError(f"suspended {text!r}: write yes or no")
        return text == "yes"
    if text.lower() == "none":
        return None if name == "rate" else 0.0
    if name == "rate":
        if text.strip() == "0":
            return None
        return parse_rate(text)
    if name in ("loss", "corrupt"):
        return _number(name, text.rstrip("%"), "percent", 100.0)
    return _number(name, text[:-2] if text.endswith("ms") else text, "ms", MAX_DELAY_MS)


def _text(value: object) -> str:
    import sxp
    try:
        return sxp.show(value)  # type: ignore[arg-type]
    except Exception:
        return repr(value)


#: No link control.
NO_LINK = LinkControl()
