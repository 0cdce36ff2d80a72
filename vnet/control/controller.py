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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

import sxp
from vnet.control.datapath import Datapath
from vnet.control.protocol import VnetdClient, not_running, resolve_socket
from vnet.datapath.kmod import client as kmod
from vnet.errors import DatapathError
from vnet.host import netdev
from vnet.model import keys
from vnet.model.addr import IPV6_UNSUPPORTED, AddressError, ifname_check, parse_ipv4
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointSpec
from vnet.model.linkctl import LinkControl, LinkError
from vnet.model.peer import check_peer, check_peer_room
from vnet.model.state import State, StateError, StateStore, resolve_state_dir
from vnet.model.vnetid import VnetId


@dataclass(frozen=True)
class PeerAddress:
    """A peer's address, and the name it was resolved from if it was given as one."""

    addr: str
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.name} (resolved to {self.addr})" if self.name else self.addr


def resolve_host(text: str) -> PeerAddress:
    """A peer given as an address or a name, resolved once, to its first IPv4 address
    (the original resolved names too).  An IPv6 address, or a name with only IPv6
    addresses, is refused: the underlay is IPv4."""
    try:
        return PeerAddress(parse_ipv4(text))
    except AddressError:
        if ":" in text:  # an IPv6 address: parse_ipv4 said so
            raise
    try:
        found = socket.getaddrinfo(text, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as e:
        raise DatapathError("EINVAL", f"cannot resolve peer '{text}': "
                            f"{getattr(e, 'strerror', None) or e}") from None
    ipv4 = [info[4][0] for info in found if info[0] == socket.AF_INET]
    if not ipv4:
        ipv6 = ", ".join(dict.fromkeys(str(info[4][0]) for info in found))
        raise DatapathError("EINVAL", f"peer {text} resolves only to IPv6 ({ipv6}): {IPV6_UNSUPPORTED}")
    return PeerAddress(ipv4[0], text)


@dataclass(frozen=True)
class Deletion:
    """A deleted vnet, and the interfaces (VMs, containers) that deleting it cut off."""

    cfg: VnetConfig
    cut_off: list[str]
    bridge_deleted: bool

    def report(self) -> str | None:
        """What --force cut off, for the user; None if nothing."""
        if not self.cut_off:
            return None
        where = (f"bridge {self.cfg.bridge} is deleted: they are on no bridge now" if self.bridge_deleted
                 else f"they stay on bridge {self.cfg.bridge}; creating the vnet again puts them back on it")
        return f"cut off from vnet {self.cfg.id}: {', '.join(self.cut_off)} ({where})"


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

    def create_vnet(self, cfg: VnetConfig, exist_ok: bool = False) -> VnetConfig:
        """Create and persist; a secure vnet without (key-file ...) gets the state
        directory's key file for it, so its state record always names its keys.

        With `exist_ok` (scripts that say what should exist), a persisted vnet with the
        same config is success, and is added to the datapath if it does not run there;
        one with another config is an error naming the fields that differ.  Key files
        count only if given: rotating a vnet's keys does not make it another vnet."""
        keys_given = bool(cfg.key_files)
        if cfg.security != "none" and not cfg.key_files:
            path = keys.default_path(self.state_dir, cfg.id)
            if not path.exists():
                raise StateError(f"vnet {cfg.id}: (security {cfg.security}) needs a key, and the config "
                                 f"names no (key-file ...) and {path} does not exist; create it with "
                                 f"'vn key-gen {path}'")
            cfg = cfg.with_keys((str(path),))
        with self.store.transaction() as state:
            held = state.vnets.get(cfg.id)
            if exist_ok and held is not None:
                differ = held.differences(cfg, keys=keys_given, ports=bool(cfg.ports),
                                          endpoints=bool(cfg.endpoints), links=bool(cfg.links))
                if differ:
                    raise StateError(f"vnet {cfg.id} exists with another config: {', '.join(differ)}; "
                                     f"delete it first to create it anew")
                if not any(sxp.child_value(r, "id") == str(cfg.id) for r in self.datapath.vnets()):
                    self.datapath.vnet_add(held)
                return held
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

    def delete_vnet(self, text: str, delete_bridge: bool = False, force: bool = False) -> Deletion:
        """Delete from the datapath and the state, and the bridge too with
        `delete_bridge`.  Interfaces on the bridge other than the vnet's own (VMs,
        containers) would be cut off from the vnet: refused, before anything changes,
        unless `force`."""
        with self.store.transaction() as state, IPRoute() as ipr:
            cfg = state.find_vnet(text)
            if cfg is None:
                raise StateError(f"vnet not found: {text}")
            others = sorted(p for p in netdev.bridge_ports(ipr, cfg.bridge)
                            if p != cfg.vnetif) if cfg.bridge is not None else []
            if others and not force:
                what = "it and its bridge" if delete_bridge else "it"
                raise StateError(
                    f"vnet {cfg.id} has interfaces on bridge {cfg.bridge}: {', '.join(others)}; deleting "
                    f"{what} would cut them off from the vnet. Detach them first "
                    f"('ip link set dev IF nomaster'), or delete anyway with --force")
            try:
                self.datapath.vnet_del(cfg.id)
            except DatapathError as e:
                if e.code != "ENOENT":  # already gone from the datapath: still forget it
                    raise
            state.remove_vnet(cfg.id)
            if delete_bridge and cfg.bridge is not None:
                netdev.delete_link(ipr, cfg.bridge)
        return Deletion(cfg, others, delete_bridge)

    def add_port(self, text: str, ifname: str) -> VnetConfig:
        """Attach interface `ifname` to a vnet as a port: checked against every vnet's
        names, then added to the datapath (which checks the interface), then kept."""
        _check_ifname(ifname)
        return self._change_vnet(text, lambda state, vid: state.add_port(vid, ifname),
                                 lambda vid: self.datapath.port_add(vid, ifname))

    def delete_port(self, text: str, ifname: str) -> VnetConfig:
        """Detach a port; a vnet that does not run in the datapath just forgets it."""
        _check_ifname(ifname)
        return self._change_vnet(text, lambda state, vid: state.remove_port(vid, ifname),
                                 lambda vid: self.datapath.port_del(vid, ifname), removing=True)

    def set_port_link(self, text: str, ifname: str, clear: bool = False,
                      suspend: bool | None = None, **options: str | None) -> LinkControl:
        """Change the link control of port `ifname` of the vnet named by `text`, live, and
        keep it (the API behind `vn port-set`; the topology tool calls it too).

        `options` are loss, delay, jitter, corrupt (numbers: percent, ms) and rate (a tc
        rate, `10mbit`), as text; None leaves one as it is, "0" or "none" removes it.
        `clear` first removes every impairment (not the suspension); `suspend` True
        suspends the port, False resumes it, None leaves it.  Returns the port's new
        link control.  Bad values raise StateError naming the option, value and port,
        and change nothing; so does a datapath that cannot apply them (a module host
        without a port of that name), before the state is written."""
        _check_ifname(ifname)
        result: list[LinkControl] = []

        def change(state: State, vid: VnetId) -> VnetConfig:
            cfg = state.vnets[vid]
            if ifname not in cfg.ports:
                raise StateError(f"vnet {vid} has no port {ifname} "
                                 f"(its ports: {', '.join(cfg.ports) or 'none'})")
            link = cfg.link(ifname)
            try:
                link = (link.cleared() if clear else link).changed(**options)
            except LinkError as e:
                raise StateError(f"port {ifname} of vnet {vid}: {e}") from None
            if suspend is not None:
                link = link.changed(suspended="yes" if suspend else "no")
            result.append(link)
            return cfg.with_link(ifname, link)

        self._change_vnet(text, change, lambda vid: self.datapath.port_set(vid, ifname, result[0]))
        return result[0]

    def ports(self) -> list:
        """The datapath's port records, each with its link control from the state where
        the datapath does not report it (one that does not know it)."""
        recs = self.datapath.ports()
        if all(sxp.children(r, "link") for r in recs):
            return recs
        state = self.store.load()
        out = []
        for r in recs:
            if not sxp.children(r, "link"):
                cfg = state.vnets.get(VnetId.parse(sxp.child_value(r, "vnet")))
                link = cfg.link(sxp.child_value(r, "ifname")) if cfg is not None else LinkControl()
                r = r + [["link", *link.to_sxp()]]
            out.append(r)
        return out

    def add_endpoint(self, text: str, spec: EndpointSpec) -> VnetConfig:
        """Open a socket endpoint of a vnet: checked against every vnet's endpoints,
        then opened by the datapath (which finds an address in use), then kept."""
        return self._change_vnet(text, lambda state, vid: state.add_endpoint(vid, spec),
                                 lambda vid: self.datapath.endpoint_add(vid, spec))

    def delete_endpoint(self, text: str, spec: EndpointSpec) -> VnetConfig:
        """Close an endpoint; a vnet that does not run in the datapath just forgets it."""
        return self._change_vnet(text, lambda state, vid: state.remove_endpoint(vid, spec),
                                 lambda vid: self.datapath.endpoint_del(vid, spec), removing=True)

    def _change_vnet(self, text: str, change: Callable[[State, VnetId], VnetConfig],
                     apply: Callable[[VnetId], None], removing: bool = False) -> VnetConfig:
        """One change of what a vnet carries, as one step: the state's rules first
        (`change` gives the new config), then the datapath (`apply`), then the state is
        written.  Removing what the datapath does not run (ENOENT) just forgets it."""
        with self.store.transaction() as state:
            cfg = state.find_vnet(text)
            if cfg is None:
                raise StateError(f"vnet not found: {text}")
            new = change(state, cfg.id)
            try:
                apply(cfg.id)
            except DatapathError as e:
                if not removing or e.code != "ENOENT":
                    raise
            state.vnets[cfg.id] = new
        return new

    def add_peer(self, host: str, port: int) -> PeerAddress:
        """Resolve, check by the peer rule (vnet.model.peer) and the cap on peers
        before anything changes, then add to the datapath and the state."""
        peer = resolve_host(host)
        with IPRoute() as ipr:
            check_peer(peer.addr, netdev.local_routes(ipr), str(peer))
        with self.store.transaction() as state:
            check_peer_room(peer.addr, state.peers, str(peer))
            state.add_peer(peer.addr, port)
            self.datapath.peer_add(peer.addr, port)
        return peer

    def delete_peer(self, host: str) -> PeerAddress:
        """No peer rule here: a peer persisted before the rule must be removable."""
        peer = resolve_host(host)
        addr = peer.addr
        with self.store.transaction() as state:
            known = addr in state.peers
            try:
                self.datapath.peer_del(addr)
            except DatapathError as e:
                if e.code != "ENOENT" or not known:
                    raise
            if known:
                state.remove_peer(addr)
        return peer

    def set_mcaddr(self, addr: str) -> None:
        addr = parse_ipv4(addr)
        with self.store.transaction() as state:
            self.datapath.set_mcaddr(addr)
            state.settings["mcaddr"] = addr

    def not_running(self, running: list) -> list[VnetConfig]:
        """The persisted vnets missing from `running` (the datapath's vnet records):
        their device was deleted behind the datapath's back (`ip link del vnif97`), or
        the datapath started without restoring them.  The state keeps them, since it
        holds what should exist; `vn vnets` says so, and `vnet-create --exist-ok` or a
        restart brings them back.  A state file that cannot be read names none: the
        listing is the datapath's, and the commands that use the state report it."""
        ids = {str(sxp.child_value(r, "id")) for r in running}
        try:
            configs = self.vnet_configs()
        except StateError:
            return []
        return [c for c in configs if str(c.id) not in ids]

    def vnet_ids(self) -> list[VnetId]:
        return sorted(self.store.load().vnets)

    def vnet_configs(self) -> list[VnetConfig]:
        """Every persisted vnet's config, sorted by id (what `vnet-list -l` prints)."""
        vnets = self.store.load().vnets
        return [vnets[v] for v in sorted(vnets)]


def _check_ifname(ifname: str) -> None:
    try:
        ifname_check(ifname, "interface name")
    except ValueError as e:
        raise StateError(f"port {ifname!r}: {e}") from None


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
    why, fix = not_running(path)
    raise DatapathError(
        "ENOENT", f"vnetd is not running ({why}) and the vnet kernel module is not loaded; start "
        f"vnetd with 'vnetd'{fix}, or load the module with 'vn insmod' (or select the host with "
        "--state-dir)")
