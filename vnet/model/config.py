"""Vnet configuration: the ``(vnet (id ..) ...)`` record and its validation.

The file format is xend's (``examples/vnet9x.sxp``) plus the optional fields
``(encapsulation udp|etherip)``, ``(mtu N)``, ``(port IFNAME [OPTION...])`` (repeatable:
the interfaces attached to the vnet directly, each with its link control options,
doc/ports.md), ``(endpoint KIND ADDR...)``
(repeatable: QEMU socket NICs, doc/endpoints.md) and ``(bridge none)`` (a vnet
with ports only) and ``(group ADDR)`` (a multicast group of the vnet's own for its
floods and VARP messages, instead of the host's shared one: doc/config.md).  Unlike xend and the module, which
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

from .addr import AddressError, ifname_check, parse_ipv4
from .endpoint import EndpointError, EndpointSpec
from .linkctl import NO_LINK, LinkControl, LinkError
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
    "MTU_MIN",
    "MTU_MAX",
    "NO_BRIDGE",
]

SECURITY_LEVELS = ("none", "auth", "conf")
ENCAPSULATIONS = ("udp", "etherip")
FIELDS = ("id", "bridge", "vnetif", "security", "encapsulation", "key-file", "mtu", "port", "endpoint",
          "group")
#: The fields that may be given more than once, in order.
_REPEATABLE = ("port", "endpoint")
#: The MTUs a vnet may have, on both encapsulations: above the default the outer
#: packets are IP-fragmented (doc/ports.md, "MTU").
MTU_MIN, MTU_MAX = 68, 65000
#: `(bridge none)`: the vnet has no bridge, only its device and its ports.
NO_BRIDGE = "none"

_HEADER_SIZE = {"udp": 64, "etherip": 52}
#: What sealing adds to a frame of a secure vnet: the 66 bytes of a sealed message
#: (header and tag, seal.OVERHEAD) in place of the 22-byte VUDP or 18-byte EtherIP
#: prefix (doc/security.md).
_SEALED_EXTRA = {"udp": 66 - 22, "etherip": 66 - 18}
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
    mtu: object = None,
    ports: object = (),
    endpoints: object = (),
    group: object = None,
    links: object = (),
) -> None:
    """The one set of rules shared by every way of building a VnetConfig."""
    if not isinstance(vid, VnetId):
        raise ConfigError(source, f"field 'id' must be a VnetId, not {type(vid).__name__}")
    try:
        check_usable(vid)
    except InvalidVnetId as e:
        raise ConfigError(source, f"field 'id': {e}") from None
    for field, value in (("bridge", bridge), ("vnetif", vnetif)):
        if value is None and field == "bridge":
            continue
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
    if mtu is not None:
        check_mtu(mtu, source)
    if not isinstance(ports, tuple) or not all(isinstance(p, str) for p in ports):
        raise ConfigError(source, "field 'port' must be a tuple of interface names")
    for port in ports:
        try:
            ifname_check(port, "port name")
        except ValueError as e:
            raise ConfigError(source, f"field 'port': {e}") from None
        if port in (bridge, vnetif):
            raise ConfigError(source, f"field 'port': {port} is the vnet's "
                              f"{'bridge' if port == bridge else 'vnetif'}, not an interface to attach")
    if len(set(ports)) != len(ports):
        twice = sorted({p for p in ports if ports.count(p) > 1})
        raise ConfigError(source, f"field 'port' names {', '.join(twice)} twice")
    check_endpoints(endpoints, source)
    if group is not None:
        check_vnet_group(group, source)
    check_links(links, ports, source)  # type: ignore[arg-type]


def check_links(links: object, ports: tuple[str, ...], source: Optional[str] = None) -> None:
    """Link controls a vnet can hold: (port, LinkControl) pairs of its own ports, in port
    order, each one active (a port without link control has no pair)."""
    if not isinstance(links, tuple) or not all(
            isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], LinkControl) for p in links):
        raise ConfigError(source, "link controls must be a tuple of (port, LinkControl) pairs")
    names = [name for name, _ in links]
    for name, link in links:
        if name not in ports:
            raise ConfigError(source, f"link control for {name!r}, which is not a port of the vnet")
        if not link.active:
            raise ConfigError(source, f"port {name}: an empty link control is written as none at all")
    if names != [p for p in ports if p in names]:
        raise ConfigError(source, "link controls must follow the order of the ports, once each")


def check_vnet_group(group: object, source: Optional[str] = None) -> str:
    """A group a vnet may flood to, in dotted-quad form, else ConfigError: IPv4
    multicast (224.0.0.0/4) outside 224.0.0.0/24, whose link-local groups (all
    hosts, routers, IGMP, OSPF, mDNS...) belong to other protocols."""
    if not isinstance(group, str):
        raise ConfigError(source, f"field 'group' must be an IPv4 address, not {type(group).__name__}")
    try:
        addr = parse_ipv4(group)
    except AddressError as e:
        raise ConfigError(source, f"field 'group': {e}") from None
    first, second, third, _ = map(int, addr.split("."))
    if not 224 <= first <= 239:
        raise ConfigError(source, f"field 'group': {group} is not an IPv4 multicast address "
                          "(224.0.0.0/4); e.g. (group 239.1.0.97)")
    if (first, second, third) == (224, 0, 0):
        raise ConfigError(source, f"field 'group': {group} is in 224.0.0.0/24, the link-local "
                          "groups of other protocols; take one from 239.0.0.0/8, e.g. (group 239.1.0.97)")
    if addr != group:
        raise ConfigError(source, f"field 'group': write {group!r} as {addr}")
    return addr


def check_endpoints(endpoints: object, source: Optional[str] = None) -> None:
    """Endpoints a vnet can have together: no two bind the same socket, no one twice."""
    if not isinstance(endpoints, tuple) or not all(isinstance(e, EndpointSpec) for e in endpoints):
        raise ConfigError(source, "field 'endpoint' must be a tuple of EndpointSpec")
    for i, a in enumerate(endpoints):
        for b in endpoints[:i]:
            if a == b:
                raise ConfigError(source, f"field 'endpoint': ({a}) is given twice")
            if a.clashes(b):
                raise ConfigError(source, f"field 'endpoint': ({a}) and ({b}) bind the same "
                                  f"{a.protocol} port {a.local[1]}")  # type: ignore[index]


def check_mtu(mtu: object, source: Optional[str] = None) -> int:
    """An MTU a vnet can have (both datapaths, both encapsulations), else ConfigError."""
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not MTU_MIN <= mtu <= MTU_MAX:
        raise ConfigError(source, f"field 'mtu': {mtu!r} is out of range; a vnet's MTU is "
                          f"{MTU_MIN} to {MTU_MAX}")
    return mtu


def _parse_mtu(text: str, source: str) -> int:
    try:
        mtu = int(text, 10)
    except ValueError:
        raise ConfigError(source, f"field 'mtu': {text!r} is not a number; a vnet's MTU is "
                          f"{MTU_MIN} to {MTU_MAX}") from None
    return check_mtu(mtu, source)


def _unknown_field(name: str) -> str:
    close = difflib.get_close_matches(name, FIELDS, n=1)
    if close:
        hint = f"did you mean {close[0]!r}?"
    else:
        hint = f"valid fields are {', '.join(FIELDS)}"
    return f"unknown field {name!r} in (vnet ...); {hint}"


@dataclass(frozen=True)
class VnetConfig:
    """One vnet as configured; always valid once constructed.  `bridge` is None for
    `(bridge none)`; `mtu` None when built means the default for the encapsulation and
    security (it is an int once built); `ports` are interface names, in order."""

    id: VnetId
    bridge: Optional[str]
    vnetif: str
    security: str = "none"
    encapsulation: str = "udp"
    #: Key files of a secure vnet, the send key's first; empty means the default
    #: file in the state directory (keys.default_path), filled in by `vn`.
    key_files: tuple[str, ...] = ()
    mtu: int = None  # type: ignore[assignment]  # None: the default, filled in below
    ports: tuple[str, ...] = ()
    #: QEMU socket NIC endpoints (doc/endpoints.md), in order.
    endpoints: tuple[EndpointSpec, ...] = ()
    #: The vnet's own multicast group (dotted quad), or None: the host's shared one.
    group: Optional[str] = None
    #: The link control of the ports that have one (doc/ports.md, "Link control"), as
    #: (port, LinkControl) pairs in port order; `link(port)` is the way to read it.
    links: tuple[tuple[str, LinkControl], ...] = ()

    def __post_init__(self) -> None:
        # Validate here too so a hand-built config cannot bypass the rules
        # that from_sxp/from_cli report with a source.
        _validated(None, self.id, self.bridge, self.vnetif, self.security, self.encapsulation,
                   self.key_files, self.mtu, self.ports, self.endpoints, self.group, self.links)
        if self.mtu is None:
            object.__setattr__(self, "mtu", self.default_mtu)

    @property
    def header(self) -> int:
        return header_size(self.encapsulation, self.security)

    @property
    def default_mtu(self) -> int:
        return default_mtu(self.encapsulation, self.security)

    @property
    def fragments(self) -> bool:
        """True if the vnet's frames may not fit one outer packet on a 1500-byte
        underlay: its MTU is above the default, so the outer packets go without DF
        and the underlay fragments them (raw EtherIP sets DF otherwise)."""
        return self.mtu > self.default_mtu

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
        mtu: Optional[int] = None,
        ports: tuple[str, ...] = (),
        endpoints: tuple[str, ...] = (),
        group: Optional[str] = None,
    ) -> VnetConfig:
        """Build from command-line options, filling in defaults; bridge "none" is a
        vnet without a bridge; each endpoint is its words, `udp LOCAL REMOTE`."""
        if isinstance(id_text, VnetId):
            vid = id_text
        else:
            try:
                vid = VnetId.parse(id_text)
            except InvalidVnetId as e:
                raise ConfigError(source, f"field 'id': {e}") from None
        specs = tuple(_endpoint(e.split() if isinstance(e, str) else e, source) for e in endpoints)
        return cls._build(source, vid, bridge, vnetif, security, encapsulation, key_files, mtu, ports,
                          specs, group)

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
        mtu: Optional[int] = None,
        ports: tuple[str, ...] = (),
        endpoints: tuple[EndpointSpec, ...] = (),
        group: Optional[str] = None,
        links: tuple[tuple[str, LinkControl], ...] = (),
    ) -> VnetConfig:
        def_bridge, def_vnetif = default_names(vid)
        bridge = def_bridge if bridge is None else None if bridge == NO_BRIDGE else bridge
        vnetif = def_vnetif if vnetif is None else vnetif
        security = "none" if security is None else security
        encapsulation = "udp" if encapsulation is None else encapsulation
        _validated(source, vid, bridge, vnetif, security, encapsulation, key_files, mtu, ports, endpoints,
                   group, links)
        return cls(vid, bridge, vnetif, security, encapsulation, key_files, mtu, ports, endpoints, group,
                   links)

    @classmethod
    def from_sxp(cls, value: sxp.Value, source: str = "<string>", base: Optional[str] = None) -> VnetConfig:
        """Build from a parsed ``(vnet (id X) ...)`` expression; relative key file
        paths are taken from `base` (the config file's directory), if given."""
        if not isinstance(value, list) or not value or value[0] != "vnet":
            raise ConfigError(source, f"expected (vnet ...), got {_show(value)}")
        given: dict[str, str] = {}
        key_files: tuple[str, ...] = ()
        ports: list[str] = []
        links: list[tuple[str, LinkControl]] = []
        endpoints: list[EndpointSpec] = []
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
            if name in given and name not in _REPEATABLE:
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
            if name == "endpoint":  # KIND and one or two addresses
                endpoints.append(_endpoint(args, source))
                continue
            if name == "port" and isinstance(args[0], str) and len(args) > 1:  # link control options
                try:
                    link = LinkControl.from_sxp(args[1:])
                except LinkError as e:
                    raise ConfigError(source, f"field 'port' {args[0]}: {e}") from None
                if link.active:
                    links.append((args[0], link))
                ports.append(args[0])
                continue
            if len(args) > 1:
                raise ConfigError(
                    source, f"field {name!r} has {len(args)} values, expected one: {_show(child)}"
                )
            if not isinstance(args[0], str):
                raise ConfigError(
                    source, f"field {name!r} must be a single word, not a list: {_show(child)}"
                )
            if name == "port":
                ports.append(args[0])
                continue
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
            _parse_mtu(given["mtu"], source) if "mtu" in given else None,
            tuple(ports),
            tuple(endpoints),
            given.get("group"),
            tuple(links),
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
        stored form never depends on a future change of defaults; except the MTU,
        written only when it is not the default of the encapsulation and security,
        which are spelled out (so records of vnets without one stay as they were),
        and the group, written only when the vnet has its own; a port's link control
        options follow its name (none: just the name, as before link control)."""
        return [
            "vnet",
            ["id", str(self.id)],
            ["bridge", NO_BRIDGE if self.bridge is None else self.bridge],
            ["vnetif", self.vnetif],
            ["security", self.security],
            ["encapsulation", self.encapsulation],
        ] + ([["key-file", *self.key_files]] if self.key_files else []) + (
            [["mtu", str(self.mtu)]] if self.mtu != self.default_mtu else []) + [
            ["port", p, *self.link(p).to_sxp()] for p in self.ports] + [e.to_sxp() for e in self.endpoints] + (
            [["group", self.group]] if self.group is not None else [])

    def with_keys(self, key_files: tuple[str, ...]) -> VnetConfig:
        """The same vnet holding other keys (rotation); validated like any config."""
        return dataclasses.replace(self, key_files=key_files)

    def with_ports(self, ports: tuple[str, ...]) -> VnetConfig:
        """The same vnet with other ports (`vn port-add`, `port-del`); a port removed
        takes its link control with it."""
        return dataclasses.replace(self, ports=ports, links=tuple(l for l in self.links if l[0] in ports))

    def link(self, port: str) -> LinkControl:
        """The link control of `port` (NO_LINK if it has none)."""
        for name, link in self.links:
            if name == port:
                return link
        return NO_LINK

    def with_link(self, port: str, link: LinkControl) -> VnetConfig:
        """The same vnet with `port`'s link control replaced (`vn port-set`)."""
        if port not in self.ports:
            raise ConfigError(None, f"vnet {self.id} has no port {port} "
                              f"(its ports: {', '.join(self.ports) or 'none'})")
        mapping = dict(self.links)
        mapping[port] = link
        return dataclasses.replace(self, links=tuple((p, mapping[p]) for p in self.ports
                                                     if p in mapping and mapping[p].active))

    def with_endpoints(self, endpoints: tuple[EndpointSpec, ...]) -> VnetConfig:
        """The same vnet with other endpoints (`vn endpoint-add`, `endpoint-del`)."""
        return dataclasses.replace(self, endpoints=endpoints)

    def differences(self, other: VnetConfig, keys: bool = True, ports: bool = True,
                    endpoints: bool = True, links: bool = True) -> list[str]:
        """How `other` differs from this config, field by field as `FIELD MINE (not
        THEIRS)`; key files only if `keys` (a rotation changes them, the vnet stays),
        ports only if `ports` (`vn port-add` changes them), endpoints only if
        `endpoints` (`vn endpoint-add` does), the ports' link control only if `links`
        (`vn port-set` changes it live)."""
        if not links:
            self, other = dataclasses.replace(self, links=()), dataclasses.replace(other, links=())
        mine, theirs = _fields(self), _fields(other)
        if "mtu" in mine or "mtu" in theirs:  # one was given: compare what they are
            mine["mtu"], theirs["mtu"] = str(self.mtu), str(other.mtu)
        return [f"{name} {mine.get(name, '-')} (not {theirs.get(name, '-')})" for name in FIELDS
                if (keys or name != "key-file") and (ports or name != "port")
                and (endpoints or name != "endpoint")
                and mine.get(name) != theirs.get(name)]


def _fields(cfg: VnetConfig) -> dict[str, str]:
    fields: dict[str, str] = {}
    for child in cfg.to_sxp()[1:]:
        text = " ".join(c if isinstance(c, str) else f"({' '.join(c)})" for c in child[1:])
        if child[0] == "endpoint":
            text = f"({text})"
        fields[child[0]] = f"{fields[child[0]]} {text}" if child[0] in _REPEATABLE and child[0] in fields \
            else text
    return fields


def _endpoint(words: object, source: Optional[str]) -> EndpointSpec:
    try:
        return EndpointSpec.parse(words)  # type: ignore[arg-type]
    except EndpointError as e:
        raise ConfigError(source, f"field 'endpoint': {e}") from None


def _show(value: object) -> str:
    try:
        text = sxp.show(value)  # type: ignore[arg-type]
    except Exception:  # a malformed value must not hide the real error
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
