"""The control model: apply a change to the datapath and persist it, as one step.

Every change runs inside a state transaction (an exclusive lock on the state
directory): validate against the persisted state, apply to the datapath, and only
if that worked write the new state.  So concurrent `vn` calls serialise, a failed
datapath operation leaves no trace in the state, and the state never claims a
vnet the datapath refused.  Listing and soft state (vifs, VARP) go straight to the
datapath.

The datapath is vnetd or the kernel module (`select_datapath`); it is chosen when a
command first needs it, so commands that only read the state work without either.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from pyroute2 import IPRoute

from vnet.control.datapath import Datapath
from vnet.control.protocol import VnetdClient, resolve_socket
from vnet.datapath.kmod import client as kmod
from vnet.errors import DatapathError
from vnet.host import netdev
from vnet.model import keys
from vnet.model.addr import AddressError, parse_ipv4
from vnet.model.config import VnetConfig
from vnet.model.state import StateError, StateStore, resolve_state_dir
from vnet.model.vnetid import VnetId


def resolve_host(name: str) -> str:
    """A peer given as a name or an address, as a dotted quad (the original resolved names too)."""
    try:
        return parse_ipv4(name)
    except AddressError:
        pass
    try:
        return socket.gethostbyname(name)
    except OSError as e:
        raise DatapathError("EINVAL", f"cannot resolve peer '{name}': {e}") from None


class Controller:
    """One host's control model: its state directory and the datapath serving it."""

    def __init__(self, state_dir: str | None = None, socket_path: str | None = None,
                 datapath: Datapath | None = None, choice: str | None = None) -> None:
        self.state_dir = resolve_state_dir(state_dir)
        self.store = StateStore(self.state_dir)
        self.socket_path = socket_path
        self.choice = choice
        self._datapath = datapath

    @property
    def datapath(self) -> Datapath:
        if self._datapath is None:
            self._datapath = select_datapath(self.state_dir, self.socket_path, self.choice)
        return self._datapath

    def create_vnet(self, cfg: VnetConfig) -> VnetConfig:
        """Create and persist; a secure vnet without (key-file ...) gets the state
        directory's key file for it, so its state record always names its keys."""
        if cfg.security != "none" and not cfg.key_files:
            path = keys.default_path(self.state_dir, cfg.id)
            if not path.exists():
                raise StateError(f"vnet {cfg.id}: (security {cfg.security}) needs a key, and the config "
                                 f"names no (key-file ...) and {path} does not exist; create it with "
                                 f"'vn key-gen {path}'")
            cfg = cfg.with_keys((str(path),))
        with self.store.transaction() as state:
            state.add_vnet(cfg)
            self.datapath.vnet_add(cfg)
        return cfg

    def _rekey(self, text: str, change) -> tuple[VnetConfig, list[keys.Key]]:
        """Apply change(held keys) -> the new keys (send key first), to the datapath
        then the state; the new key files are the new keys' paths."""
        with self.store.transaction() as state:
            cfg = state.find_vnet(text)
            if cfg is None:
                raise StateError(f"vnet not found: {text}")
            if cfg.security == "none":
                raise StateError(f"vnet {cfg.id} has (security none) and uses no keys")
            try:
                result = change(keys.load_keys(cfg.key_files))
            except keys.KeyFileError as e:
                raise StateError(f"vnet {cfg.id}: {e}") from None
            new = cfg.with_keys(tuple(k.path for k in result))
            self.datapath.vnet_keys(cfg.id, new.key_files)
            state.vnets[cfg.id] = new
        return new, result

    def add_key(self, text: str, path: str, send: bool = False) -> tuple[VnetConfig, list[keys.Key]]:
        """Hold one more key: accepted at once, sent with only if `send` (rotation step 2)."""
        path = os.path.abspath(path)

        def change(held: list[keys.Key]) -> list[keys.Key]:
            if len(held) >= keys.MAX_KEYS:
                raise keys.KeyFileError(f"already holds {len(held)} keys (ids {', '.join(str(k.id) for k in held)}); "
                                        "remove one with 'vn key-del' first")
            new = keys.load_key(path)
            if any(k.id == new.id for k in held):
                raise keys.KeyFileError(f"already holds a key with id {new.id}; give the new key "
                                        "another id ('vn key-gen --id N')")
            return [new] + held if send else held + [new]
        return self._rekey(text, change)

    def use_key(self, text: str, key_id: int) -> tuple[VnetConfig, list[keys.Key]]:
        """Send with the held key `key_id` (rotation step 3)."""
        def change(held: list[keys.Key]) -> list[keys.Key]:
            chosen = _held(held, key_id)
            return [chosen] + [k for k in held if k is not chosen]
        return self._rekey(text, change)

    def delete_key(self, text: str, key_id: int) -> tuple[VnetConfig, list[keys.Key]]:
        """Stop accepting `key_id` (rotation step 4); the send key cannot go."""
        def change(held: list[keys.Key]) -> list[keys.Key]:
            chosen = _held(held, key_id)
            if chosen is held[0]:
                raise keys.KeyFileError(f"key {key_id} is the send key; send with another key first "
                                        "('vn key-use') or add one with 'vn key-add --send'")
            return [k for k in held if k is not chosen]
        return self._rekey(text, change)

    def find_vnet(self, text: str) -> VnetConfig:
        cfg = self.store.load().find_vnet(text)
        if cfg is None:
            raise StateError(f"vnet not found: {text}")
        return cfg

    def delete_vnet(self, text: str, delete_bridge: bool = False) -> VnetConfig:
        with self.store.transaction() as state:
            cfg = state.find_vnet(text)
            if cfg is None:
                raise StateError(f"vnet not found: {text}")
            try:
                self.datapath.vnet_del(cfg.id)
            except DatapathError as e:
                if e.code != "ENOENT":  # already gone from the datapath: still forget it
                    raise
            state.remove_vnet(cfg.id)
            if delete_bridge:
                with IPRoute() as ipr:
                    netdev.delete_link(ipr, cfg.bridge)
        return cfg

    def add_peer(self, host: str, port: int) -> str:
        addr = resolve_host(host)
        with self.store.transaction() as state:
            state.add_peer(addr, port)
            self.datapath.peer_add(addr, port)
        return addr

    def delete_peer(self, host: str) -> str:
        addr = resolve_host(host)
        with self.store.transaction() as state:
            known = addr in state.peers
            try:
                self.datapath.peer_del(addr)
            except DatapathError as e:
                if e.code != "ENOENT" or not known:
                    raise
            if known:
                state.remove_peer(addr)
        return addr

    def set_mcaddr(self, addr: str) -> None:
        addr = parse_ipv4(addr)
        with self.store.transaction() as state:
            self.datapath.set_mcaddr(addr)
            state.settings["mcaddr"] = addr

    def vnet_ids(self) -> list[VnetId]:
        return sorted(self.store.load().vnets)

    def vnet_configs(self) -> list[VnetConfig]:
        """Every persisted vnet's config, sorted by id (what `vnet-list -l` prints)."""
        vnets = self.store.load().vnets
        return [vnets[v] for v in sorted(vnets)]


def _held(held: list[keys.Key], key_id: int) -> keys.Key:
    for k in held:
        if k.id == key_id:
            return k
    raise keys.KeyFileError(f"holds no key with id {key_id} (held: {', '.join(str(k.id) for k in held)})")


DATAPATH_ENV = "VNET_DATAPATH"
#: The datapaths a host can run, and what --datapath accepts: one of them, or auto.
DATAPATH_KINDS = ("kmod", "vnetd")
DATAPATH_CHOICES = ("auto", *DATAPATH_KINDS)


def resolve_choice(option: str | None) -> str:
    """--datapath, else $VNET_DATAPATH, else auto."""
    choice = option or os.environ.get(DATAPATH_ENV) or "auto"
    if choice not in DATAPATH_CHOICES:
        source = "--datapath" if option else DATAPATH_ENV
        raise DatapathError("EINVAL", f"{source}={choice}: expected one of {', '.join(DATAPATH_CHOICES)}")
    return choice


def vnetd_answers(path: Path) -> bool:
    """True if a vnetd accepts connections on `path`.  A socket we may not use counts:
    its owner then hears of the refusal (EPERM) from the request itself."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except PermissionError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return True


def select_datapath(state_dir: Path, socket_path: str | None, choice: str | None = None) -> Datapath:
    """The datapath serving this host.  An explicit choice (--datapath, $VNET_DATAPATH)
    wins.  Otherwise a running vnetd, since starting it was the user's explicit choice;
    else the kernel module if it is loaded; else an error naming both ways to get one."""
    choice = resolve_choice(choice)
    path = resolve_socket(socket_path, state_dir)
    if choice == "vnetd" or (choice == "auto" and vnetd_answers(path)):
        return VnetdClient(path)
    if choice == "kmod" or kmod.module_loaded():
        return kmod.KmodClient()
    raise DatapathError(
        "ENOENT", f"vnetd is not running (no control socket at {path}) and the vnet kernel module "
        "is not loaded; start vnetd with 'vnetd', or load the module with 'vn insmod' "
        "(or select the host with --state-dir)")
