"""Persistent per-host vnet state: configured vnets, peers and settings.

The original kept this in the kernel (lost on reboot) or in xend's xenstore
records (lost when xend was broken).  Here it is one SXP file so it can be
read, diffed and repaired by hand.

Concurrency model: writers serialise on an ``flock`` of ``<dir>/lock`` and
replace ``state.sxp`` by an atomic rename, so readers never lock and always
see a complete file, and a crash mid-write leaves the previous file intact.
A file we cannot understand is never overwritten: the user may have edited
it, and silently replacing it with an empty state would drop every vnet.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import sxp
from vnet.errors import VnetError
from vnet.host.privilege import user_namespace_note

from .addr import parse_ipv4
from .config import ConfigError, VnetConfig
from .durable import fsync_dir, make_dir
from .endpoint import EndpointSpec
from .vnetid import InvalidVnetId, VnetId

__all__ = [
    "DEFAULT_STATE_DIR",
    "STATE_DIR_ENV",
    "DEFAULT_PEER_PORT",
    "STATE_VERSION",
    "StateError",
    "State",
    "StateStore",
    "resolve_state_dir",
]

DEFAULT_STATE_DIR = "/var/lib/vnet"
STATE_DIR_ENV = "VNET_STATE_DIR"
DEFAULT_PEER_PORT = 1798
STATE_VERSION = 1

_STATE_FILE = "state.sxp"
_LOCK_FILE = "lock"
_FILE_MODE = 0o644
_DIR_MODE = 0o755


class StateError(VnetError):
    """The state cannot be read or the requested change conflicts with it."""


def resolve_state_dir(option: Optional[str] = None) -> Path:
    """Pick the state directory: explicit option, then $VNET_STATE_DIR, then
    the system default.  Tests and unprivileged demos rely on the first two."""
    if option:
        return Path(option)
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        return Path(env)
    return Path(DEFAULT_STATE_DIR)


def _ip_key(addr: str) -> tuple[int, ...]:
    return tuple(int(x) for x in addr.split("."))


@dataclass
class State:
    """Everything this host has been told to set up; mutated in transactions."""

    vnets: dict[VnetId, VnetConfig] = field(default_factory=dict)
    peers: dict[str, int] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)

    def add_vnet(self, cfg: VnetConfig) -> None:
        """Add ``cfg``; refuse duplicate ids and any reuse of an interface
        name, since two vnets sharing a device or bridge would merge LANs."""
        if cfg.id in self.vnets:
            raise StateError(f"vnet {cfg.id} already exists")
        names = [("bridge", cfg.bridge), ("vnetif", cfg.vnetif)] + [("port", p) for p in cfg.ports]
        for kind, name in names:
            if name is not None:
                self.check_free(name, kind)
        for spec in cfg.endpoints:
            self.check_endpoint_free(spec)
        self.vnets[cfg.id] = cfg

    def check_endpoint_free(self, spec: EndpointSpec, skip: Optional[VnetId] = None) -> None:
        """Refuse an endpoint that binds what an endpoint of a vnet other than `skip`
        binds (the same port of one protocol on overlapping addresses)."""
        for other in self.vnets.values():
            if other.id == skip:
                continue
            for held in other.endpoints:
                if held == spec or held.clashes(spec):
                    raise StateError(f"endpoint ({spec}): vnet {other.id} has endpoint ({held}), "
                                     f"bound to the same {spec.protocol} port")

    def add_endpoint(self, vid: VnetId, spec: EndpointSpec) -> VnetConfig:
        """The vnet `vid` with one more endpoint, checked against every vnet's
        endpoints; returned, not stored (as add_port)."""
        cfg = self.vnets[vid]
        if spec in cfg.endpoints:
            raise StateError(f"endpoint ({spec}) is already in vnet {vid}")
        self.check_endpoint_free(spec, skip=vid)
        try:
            return cfg.with_endpoints(cfg.endpoints + (spec,))
        except ConfigError as e:
            raise StateError(f"vnet {vid}: {e.problem}") from None

    def remove_endpoint(self, vid: VnetId, spec: EndpointSpec) -> VnetConfig:
        """The vnet `vid` without the endpoint `spec`, not stored (as add_port)."""
        cfg = self.vnets[vid]
        if spec not in cfg.endpoints:
            have = ", ".join(f"({e})" for e in cfg.endpoints) or "none"
            raise StateError(f"vnet {vid} has no endpoint ({spec}) (its endpoints: {have})")
        return cfg.with_endpoints(tuple(e for e in cfg.endpoints if e != spec))

    def check_free(self, name: str, kind: str, skip: Optional[VnetId] = None) -> None:
        """Refuse `name` as a `kind` (bridge, vnetif, port) if a vnet other than `skip`
        already uses it as its bridge, vnetif or one of its ports."""
        for other in self.vnets.values():
            if other.id == skip:
                continue
            taken = {p: "port" for p in other.ports}
            taken.update({other.vnetif: "vnetif"})
            if other.bridge is not None:
                taken[other.bridge] = "bridge"
            if name in taken:
                what = "a port" if taken[name] == "port" else f"its {taken[name]}"
                raise StateError(f"{kind} {name} is already used by vnet {other.id} (as {what})")

    def add_port(self, vid: VnetId, ifname: str) -> VnetConfig:
        """The vnet `vid` with one more port `ifname`, checked against every vnet's
        names; returns the new config without storing it (the caller stores it once
        the datapath took the port)."""
        cfg = self.vnets[vid]
        if ifname in cfg.ports:
            raise StateError(f"port {ifname} is already in vnet {vid}")
        if ifname in (cfg.bridge, cfg.vnetif):
            raise StateError(f"port {ifname}: it is vnet {vid}'s "
                             f"{'bridge' if ifname == cfg.bridge else 'vnetif'}, not an interface to attach")
        self.check_free(ifname, "port", skip=vid)
        return cfg.with_ports(cfg.ports + (ifname,))

    def remove_port(self, vid: VnetId, ifname: str) -> VnetConfig:
        """The vnet `vid` without its port `ifname`, not stored (as add_port)."""
        cfg = self.vnets[vid]
        if ifname not in cfg.ports:
            have = ", ".join(cfg.ports) or "none"
            raise StateError(f"vnet {vid} has no port {ifname} (its ports: {have})")
        return cfg.with_ports(tuple(p for p in cfg.ports if p != ifname))

    def remove_vnet(self, vid: VnetId) -> VnetConfig:
        """Remove and return the vnet ``vid``."""
        try:
            return self.vnets.pop(vid)
        except KeyError:
            raise StateError(f"vnet {vid} does not exist") from None

    def find_vnet(self, text: str) -> Optional[VnetConfig]:
        """Look a vnet up the way users name it: an id in any form, or its
        vnetif or bridge name.  An id match wins, as names like ``beef`` are
        also valid short ids."""
        try:
            vid = VnetId.parse(text)
        except (InvalidVnetId, TypeError):
            vid = None
        if vid is not None and vid in self.vnets:
            return self.vnets[vid]
        for cfg in self.vnets.values():
            if text == cfg.vnetif:
                return cfg
        for cfg in self.vnets.values():
            if cfg.bridge is not None and text == cfg.bridge:
                return cfg
        return None

    def add_peer(self, addr: str, port: int = DEFAULT_PEER_PORT) -> str:
        """Add or update a forwarding peer; returns the normalised address."""
        addr = parse_ipv4(addr)
        _check_port(port)
        self.peers[addr] = port
        return addr

    def remove_peer(self, addr: str) -> int:
        """Remove a peer and return its port."""
        addr = parse_ipv4(addr)
        try:
            return self.peers.pop(addr)
        except KeyError:
            raise StateError(f"peer {addr} does not exist") from None

    def to_sxp(self) -> list:
        """Deterministic order (ids, addresses, keys sorted) keeps diffs of
        the state file meaningful."""
        out: list = ["vnet-state", ["version", str(STATE_VERSION)]]
        out.append(["settings"] + [[k, self.settings[k]] for k in sorted(self.settings)])
        out.extend(self.vnets[vid].to_sxp() for vid in sorted(self.vnets))
        out.extend(
            ["peer", ["addr", addr], ["port", str(self.peers[addr])]]
            for addr in sorted(self.peers, key=_ip_key)
        )
        return out

    @classmethod
    def from_sxp(cls, value: sxp.Value) -> State:
        """Rebuild from :meth:`to_sxp` output; raises ValueError (ConfigError,
        StateError text) describing the first problem."""
        if not isinstance(value, list) or not value or value[0] != "vnet-state":
            raise ValueError(f"expected (vnet-state ...), got {_show(value)}")
        state = cls()
        version_seen = settings_seen = False
        vnet_count = 0
        for child in value[1:]:
            if not isinstance(child, list) or not child or not isinstance(child[0], str):
                raise ValueError(f"unexpected {_show(child)} in (vnet-state ...)")
            head = child[0]
            if head == "version":
                if version_seen:
                    raise ValueError("(version ...) given twice")
                version_seen = True
                if child[1:] != [str(STATE_VERSION)]:
                    raise ValueError(
                        f"unsupported {_show(child)}; this vn understands (version {STATE_VERSION})"
                    )
            elif head == "settings":
                if settings_seen:
                    raise ValueError("(settings ...) given twice")
                settings_seen = True
                for item in child[1:]:
                    if (
                        not isinstance(item, list)
                        or len(item) != 2
                        or not all(isinstance(x, str) for x in item)
                    ):
                        raise ValueError(f"bad setting {_show(item)}; expected (name value)")
                    if item[0] in state.settings:
                        raise ValueError(f"setting {item[0]!r} given twice")
                    state.settings[item[0]] = item[1]
            elif head == "vnet":
                vnet_count += 1
                cfg = VnetConfig.from_sxp(child, f"(vnet ...) number {vnet_count}")
                try:
                    state.add_vnet(cfg)
                except StateError as e:
                    raise ValueError(str(e)) from None
            elif head == "peer":
                addr, port = _peer_from_sxp(child)
                if addr in state.peers:
                    raise ValueError(f"peer {addr} given twice")
                state.peers[addr] = port
            else:
                raise ValueError(f"unknown entry ({head} ...) in (vnet-state ...)")
        if not version_seen:
            raise ValueError("missing (version ...) in (vnet-state ...)")
        return state


def _check_port(port: object) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise StateError(f"invalid UDP port {port!r}; expected 1 to 65535")
    return port


def _peer_from_sxp(child: list) -> tuple[str, int]:
    fields: dict[str, str] = {}
    for item in child[1:]:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(x, str) for x in item)
            or item[0] not in ("addr", "port")
            or item[0] in fields
        ):
            raise ValueError(f"bad {_show(child)}; expected (peer (addr A.B.C.D) (port N))")
        fields[item[0]] = item[1]
    if "addr" not in fields:
        raise ValueError(f"bad {_show(child)}: missing (addr ...)")
    addr = parse_ipv4(fields["addr"])
    port_text = fields.get("port", str(DEFAULT_PEER_PORT))
    try:
        port = int(port_text, 16) if port_text[:2].lower() == "0x" else int(port_text, 10)
        _check_port(port)
    except (ValueError, StateError):
        raise ValueError(f"bad {_show(child)}: invalid port {port_text!r}") from None
    return addr, port


def _show(value: object) -> str:
    try:
        text = sxp.show(value)  # type: ignore[arg-type]
    except Exception:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class StateStore:
    """The on-disk home of a :class:`State`: ``<dir>/state.sxp`` + ``<dir>/lock``."""

    def __init__(self, dir: Union[str, os.PathLike]) -> None:
        self.dir = Path(dir)
        self.path = self.dir / _STATE_FILE
        self.lock_path = self.dir / _LOCK_FILE

    def __repr__(self) -> str:
        return f"StateStore({str(self.dir)!r})"

    def load(self) -> State:
        """Read the current state without locking (renames are atomic).

        A missing directory or file is an empty state: nothing configured
        yet.  Anything unreadable raises StateError and touches nothing.
        """
        try:
            values = sxp.parse_file(self.path)
        except FileNotFoundError:
            return State()
        except OSError as e:
            raise self._load_error(f"cannot read it: {e.strerror or e}") from None
        except sxp.SxpError as e:
            raise self._load_error(str(e)) from None
        if len(values) != 1:
            found = "nothing" if not values else f"{len(values)} top-level expressions"
            raise self._load_error(f"expected one (vnet-state ...), found {found}")
        try:
            return State.from_sxp(values[0])
        except (ConfigError, ValueError) as e:
            raise self._load_error(str(e)) from None

    def _load_error(self, detail: str) -> StateError:
        return StateError(
            f"cannot load vnet state from {self.path}: {detail} "
            "(the file was left untouched; fix it by hand or move it aside to start empty)"
        )

    @contextmanager
    def transaction(self) -> Iterator[State]:
        """Lock, load, let the caller mutate, then save atomically.

        If the body raises, nothing is written; if the file is unreadable,
        the StateError propagates before the body runs, so a corrupt file is
        never replaced.
        """
        try:
            self._ensure_dir()
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        except PermissionError as e:
            raise StateError(f"{e.filename}: {e.strerror}: changing the vnet state needs root"
                             f"{user_namespace_note()}") from None
        except OSError as e:
            raise StateError(f"{e.filename}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self.load()
            yield state
            try:
                self._write(state)
            except OSError as e:
                raise StateError(f"cannot write the vnet state to {self.path}: "
                                 f"{e.strerror or e}") from None
        finally:
            os.close(fd)  # also drops the flock

    def _ensure_dir(self) -> None:
        if self.dir.is_dir():
            return
        make_dir(self.dir, _DIR_MODE)
        # mkdir's mode is masked by the umask; readers (e.g. `vn vnets` run
        # by an ordinary user) need to get in regardless.
        os.chmod(self.dir, _DIR_MODE)

    def _write(self, state: State) -> None:
        """Write-then-rename; only called with the lock held."""
        text = (
            "# vnet host state, written by vn. Edit only while no vn command is running.\n"
            + sxp.pretty(state.to_sxp()).rstrip("\n")
            + "\n"
        )
        self._remove_stale_temps()
        tmp = self.dir / f"{_STATE_FILE}.tmp.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
        try:
            try:
                os.fchmod(fd, _FILE_MODE)
                data = text.encode("utf-8")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        fsync_dir(self.dir)

    def _remove_stale_temps(self) -> None:
        # Only lock holders create temp files, so any present now were left
        # by a writer that died between create and rename.
        for stale in self.dir.glob(f"{_STATE_FILE}.tmp.*"):
            try:
                stale.unlink()
            except FileNotFoundError:
                pass

