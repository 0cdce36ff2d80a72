"""Vnet configuration: the ``(vnet (id ..) ...)`` record and its validation.

The file format is xend's (``examples/vnet9x.sxp``) plus an optional
``(encapsulation udp|etherip)`` field.  Unlike xend and the module, which
ignored unknown keys, every mistake here is an error that names the source
and the field, because a silently ignored key (``vnif`` for ``vnetif`` in
the shipped vnet99.sxp) produced a vnet whose device name nobody expected.

Default names (DECISION)
------------------------
The original tools disagreed: xend named the device ``vnif<id as typed>``
while the module used ``vnif%04x`` of the last 16-bit field, so omitting
``vnetif`` broke bridging.  We use ``vnif`` + lowercase hex of the last
16-bit field *without* zero padding (``vnif97`` for id 97), and ``vnet`` +
the same hex for the bridge (``vnet97``).  This matches xend, the shipped
examples and the names users already put in VM configs
(``vif="bridge=vnet97"``); the module's ``vnif0097`` is the odd one out.
Because only the last field is used, ids differing only in the upper 112
bits get the same default names; the state layer rejects such clashes
rather than letting two vnets fight over a device.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from typing import Optional, Union

import sxp
from vnet.errors import VnetError

from .addr import ifname_check
from .vnetid import InvalidVnetId, VnetId, check_usable

__all__ = [
    "SECURITY_LEVELS",
    "ENCAPSULATIONS",
    "FIELDS",
    "ConfigError",
    "VnetConfig",
    "default_names",
    "header_size",
    "default_mtu",
]

SECURITY_LEVELS = ("none", "auth", "conf")
ENCAPSULATIONS = ("udp", "etherip")
FIELDS = ("id", "bridge", "vnetif", "security", "encapsulation", "key-file")

_HEADER_SIZE = {"udp": 64, "etherip": 52}
#: What sealing adds to a frame of a secure vnet: the 54-byte sealed message in place
#: of the 22-byte VUDP or 18-byte EtherIP prefix (doc/security.md).
_SEALED_EXTRA = {"udp": 54 - 22, "etherip": 54 - 18}
_ETH_MTU = 1500
MAX_KEY_FILES = 2


class ConfigError(VnetError, ValueError):
    """A vnet config that cannot be used; the message starts with its source."""

    def __init__(self, source: Optional[str], problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}" if source else problem)


def default_names(vid: VnetId) -> tuple[str, str]:
    """Return ``(bridge, vnetif)`` defaults for ``vid``; see the module docstring."""
    suffix = f"{vid.last_field:x}"
    return f"vnet{suffix}", f"vnif{suffix}"


def header_size(encapsulation: str, security: str = "none") -> int:
    """Encapsulation overhead shown as ``(header N)`` in vnet listings.

    UDP: Ethernet 14 + IP 20 + EtherIP 18 + UDP 8 + vnet header 4 = 64.
    Raw EtherIP: 14 + 20 + 18 = 52.  A secure vnet adds 32 (UDP) or 36 (raw).
    """
    try:
        size = _HEADER_SIZE[encapsulation]
    except KeyError:
        raise ConfigError(None, _bad_choice("encapsulation", encapsulation, ENCAPSULATIONS)) from None
    return size if security == "none" else size + _SEALED_EXTRA[encapsulation]


def default_mtu(encapsulation: str, security: str = "none") -> int:
    """Device MTU: UDP relies on host IP fragmentation so it keeps 1500;
    raw EtherIP sets DF, so the device shrinks to fit 1500 on the wire."""
    if encapsulation == "udp":
        return _ETH_MTU
    if encapsulation == "etherip":
        return _ETH_MTU - header_size(encapsulation, security)
    raise ConfigError(None, _bad_choice("encapsulation", encapsulation, ENCAPSULATIONS))


def _bad_choice(field: str, value: object, valid: tuple[str, ...]) -> str:
    noun = "level" if field == "security" else "value"
    return f"unknown {field} {noun} {value!r}; valid {noun}s are {', '.join(valid)}"


def _validated(
    source: Optional[str],
    vid: object,
    bridge: object,
    vnetif: object,
    security: object,
    encapsulation: object,
    key_files: object = (),
) -> None:
    """The one set of rules shared by every way of building a VnetConfig."""
    if not isinstance(vid, VnetId):
        raise ConfigError(source, f"field 'id' must be a VnetId, not {type(vid).__name__}")
    try:
        check_usable(vid)
    except InvalidVnetId as e:
        raise ConfigError(source, f"field 'id': {e}") from None
    for field, value in (("bridge", bridge), ("vnetif", vnetif)):
        if not isinstance(value, str):
            raise ConfigError(source, f"field {field!r} must be a name, not {type(value).__name__}")
        try:
            ifname_check(value, f"{field} name")
        except ValueError as e:
            raise ConfigError(source, f"field {field!r}: {e}") from None
    if bridge == vnetif:
        raise ConfigError(
            source, f"bridge and vnetif are both {bridge!r}; the device is attached to the bridge, "
            "so they need different names"
        )
    if security not in SECURITY_LEVELS:
        raise ConfigError(source, f"field 'security': {_bad_choice('security', security, SECURITY_LEVELS)}")
    if encapsulation not in ENCAPSULATIONS:
        raise ConfigError(
            source, f"field 'encapsulation': {_bad_choice('encapsulation', encapsulation, ENCAPSULATIONS)}"
        )
    if not isinstance(key_files, tuple) or not all(isinstance(k, str) for k in key_files):
        raise ConfigError(source, "field 'key-file' must be a tuple of paths")
    if key_files and security == "none":
        raise ConfigError(source, "field 'key-file': a vnet with (security none) uses no key; "
                          "remove it or set (security auth) or (security conf)")
    if len(key_files) > MAX_KEY_FILES:
        raise ConfigError(source, f"field 'key-file' names {len(key_files)} files; a vnet holds at most "
                          f"{MAX_KEY_FILES} keys (the send key first)")
    for path in key_files:
        if not os.path.isabs(path):
            raise ConfigError(source, f"field 'key-file': {path!r} is not an absolute path")
    if len(set(key_files)) != len(key_files):
        raise ConfigError(source, "field 'key-file' names the same file twice")


def _unknown_field(name: str) -> str:
    close = difflib.get_close_matches(name, FIELDS, n=1)
    if close:
        hint = f"did you mean {close[0]!r}?"
    else:
        hint = f"valid fields are {', '.join(FIELDS)}"
    return f"unknown field {name!r} in (vnet ...); {hint}"


@dataclass(frozen=True)
class VnetConfig:
    """One vnet as configured; always valid once constructed."""

    id: VnetId
    bridge: str
    vnetif: str
    security: str = "none"
    encapsulation: str = "udp"
    #: Key files of a secure vnet, the send key's first; empty means the default
    #: file in the state directory (keys.default_path), filled in by `vn`.
    key_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Validate here too so a hand-built config cannot bypass the rules
        # that from_sxp/from_cli report with a source.
        _validated(None, self.id, self.bridge, self.vnetif, self.security, self.encapsulation,
                   self.key_files)

    @property
    def header(self) -> int:
        return header_size(self.encapsulation, self.security)

    @property
    def mtu(self) -> int:
        return default_mtu(self.encapsulation, self.security)

    @classmethod
    def from_cli(
        cls,
        id_text: Union[str, VnetId],
        bridge: Optional[str] = None,
        vnetif: Optional[str] = None,
        security: Optional[str] = None,
        encapsulation: Optional[str] = None,
        key_files: tuple[str, ...] = (),
        source: str = "<command line>",
    ) -> VnetConfig:
        """Build from command-line options, filling in defaults."""
        if isinstance(id_text, VnetId):
            vid = id_text
        else:
            try:
                vid = VnetId.parse(id_text)
            except InvalidVnetId as e:
                raise ConfigError(source, f"field 'id': {e}") from None
        return cls._build(source, vid, bridge, vnetif, security, encapsulation, key_files)

    @classmethod
    def _build(
        cls,
        source: str,
        vid: VnetId,
        bridge: Optional[str],
        vnetif: Optional[str],
        security: Optional[str],
        encapsulation: Optional[str],
        key_files: tuple[str, ...] = (),
    ) -> VnetConfig:
        def_bridge, def_vnetif = default_names(vid)
        bridge = def_bridge if bridge is None else bridge
        vnetif = def_vnetif if vnetif is None else vnetif
        security = "none" if security is None else security
        encapsulation = "udp" if encapsulation is None else encapsulation
        _validated(source, vid, bridge, vnetif, security, encapsulation, key_files)
        return cls(vid, bridge, vnetif, security, encapsulation, key_files)

    @classmethod
    def from_sxp(cls, value: sxp.Value, source: str = "<string>", base: Optional[str] = None) -> VnetConfig:
        """Build from a parsed ``(vnet (id X) ...)`` expression; relative key file
        paths are taken from `base` (the config file's directory), if given."""
        if not isinstance(value, list) or not value or value[0] != "vnet":
            raise ConfigError(source, f"expected (vnet ...), got {_show(value)}")
        given: dict[str, str] = {}
        key_files: tuple[str, ...] = ()
        for child in value[1:]:
            if not isinstance(child, list):
                raise ConfigError(
                    source, f"unexpected {_show(child)} in (vnet ...); fields are written (name value)"
                )
            if not child:
                raise ConfigError(source, "empty () in (vnet ...); fields are written (name value)")
            name = child[0]
            if not isinstance(name, str):
                raise ConfigError(
                    source, f"unexpected {_show(child)} in (vnet ...); fields are written (name value)"
                )
            if name == "@":
                continue  # SXP attribute list; conventionally skipped by child lookup
            if name not in FIELDS:
                raise ConfigError(source, _unknown_field(name))
            if name in given:
                raise ConfigError(source, f"field {name!r} given twice in (vnet ...)")
            args = child[1:]
            if not args:
                raise ConfigError(source, f"field {name!r} has no value; write ({name} VALUE)")
            if name == "key-file":  # the one field with two values: send key, other key
                if not all(isinstance(a, str) for a in args):
                    raise ConfigError(source, f"field 'key-file' takes file names, not lists: {_show(child)}")
                key_files = tuple(os.path.join(base, a) if base is not None else a for a in args)
                given[name] = ""
                continue
            if len(args) > 1:
                raise ConfigError(
                    source, f"field {name!r} has {len(args)} values, expected one: {_show(child)}"
                )
            if not isinstance(args[0], str):
                raise ConfigError(
                    source, f"field {name!r} must be a single word, not a list: {_show(child)}"
                )
            given[name] = args[0]
        if "id" not in given:
            raise ConfigError(source, "missing field 'id' in (vnet ...); e.g. (vnet (id 97))")
        try:
            vid = VnetId.parse(given["id"])
        except InvalidVnetId as e:
            raise ConfigError(source, f"field 'id': {e}") from None
        return cls._build(
            source,
            vid,
            given.get("bridge"),
            given.get("vnetif"),
            given.get("security"),
            given.get("encapsulation"),
            key_files,
        )

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike]) -> VnetConfig:
        """Load a config file holding exactly one ``(vnet ...)``."""
        source = os.fspath(path)
        try:
            values = sxp.parse_file(path)
        except OSError as e:
            raise ConfigError(source, f"cannot read: {e.strerror or e}") from None
        except sxp.SxpError as e:
            # SxpError's text already carries source:line:column.
            raise ConfigError(None, str(e)) from None
        if len(values) != 1:
            what = "nothing" if not values else f"{len(values)} expressions"
            raise ConfigError(source, f"expected exactly one (vnet ...), found {what}")
        return cls.from_sxp(values[0], source, base=os.path.dirname(os.path.abspath(source)))

    def to_sxp(self) -> list:
        """Full record with every field spelled out, defaults included, so the
        stored form never depends on a future change of defaults."""
        return [
            "vnet",
            ["id", str(self.id)],
            ["bridge", self.bridge],
            ["vnetif", self.vnetif],
            ["security", self.security],
            ["encapsulation", self.encapsulation],
        ] + ([["key-file", *self.key_files]] if self.key_files else [])

    def with_keys(self, key_files: tuple[str, ...]) -> VnetConfig:
        """The same vnet holding other keys (rotation); validated like any config."""
        return dataclasses.replace(self, key_files=key_files)

    def differences(self, other: VnetConfig, keys: bool = True) -> list[str]:
        """How `other` differs from this config, field by field as `FIELD MINE (not
        THEIRS)`; key files only if `keys` (a rotation changes them, the vnet stays)."""
        mine, theirs = _fields(self), _fields(other)
        return [f"{name} {mine.get(name, '-')} (not {theirs.get(name, '-')})" for name in FIELDS
                if (keys or name != "key-file") and mine.get(name) != theirs.get(name)]


def _fields(cfg: VnetConfig) -> dict[str, str]:
    return {child[0]: " ".join(child[1:]) for child in cfg.to_sxp()[1:]}


def _show(value: object) -> str:
    try:
        text = sxp.show(value)  # type: ignore[arg-type]
    except Exception:  # a malformed value must not hide the real error
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
