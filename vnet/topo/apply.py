"""Realizing this host's part of a topology, and taking it away again.

`apply` validates everything first (the file, every vnet config), then makes what is
missing, changes what changed and removes what the file no longer has; a failing step
undoes what this run made, so nothing is half-applied.  What exists already with the
right config is left alone: a second apply recreates nothing."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyroute2 import IPRoute

from vnet.control.controller import Controller
from vnet.control.datapath import DatapathError
from vnet.host import netdev
from vnet.model.config import VnetConfig
from vnet.model.linkctl import NO_LINK, LinkControl
from vnet.model.state import StateError

from . import ids, netns, record
from .model import NETNS_KINDS, SOCKET_KINDS, Endpoint, Segment, Topology

#: Prints one line of progress.
Say = Callable[[str], None]


def local_host(topo: Topology, name: str | None) -> str:
    """This host's name in the topology: `name` (--host), else the host whose underlay
    address is one of this namespace's IPv4 addresses."""
    if name is not None:
        if name not in topo.hosts:
            raise StateError(f"{topo.source}: no host {name!r} (hosts: {', '.join(sorted(topo.hosts))})")
        return name
    with IPRoute() as ipr:
        mine = {addr for _, addr, _, _ in netdev.ipv4_addresses(ipr)}
    found = [h.name for h in topo.hosts.values() if h.address in mine]
    if len(found) != 1:
        what = "none of the hosts' addresses is" if not found else f"hosts {', '.join(found)} all are"
        raise StateError(f"{topo.source}: which host is this? {what} an address of this host "
                         f"({', '.join(sorted(mine)) or 'none'}); say it with --host NAME")
    return found[0]


@dataclass(frozen=True)
class Veth:
    """A veth this host makes: `port` here, `iface` in node `node`'s namespace."""

    port: str
    node: str
    iface: str
    mtu: int
    vnet: str = ""


@dataclass
class Part:
    """What one host builds: a vnet config per segment with a local end, and veths."""

    host: str
    vnets: dict[str, tuple[Segment, VnetConfig]] = field(default_factory=dict)
    veths: dict[str, Veth] = field(default_factory=dict)


def port_of(topo: Topology, ep: Endpoint) -> str | None:
    """The port of a local end: the veth's host end, or the plain interface; None for
    socket NICs (they are endpoints)."""
    kind = topo.nodes[ep.node].kind
    if kind in NETNS_KINDS:
        return ids.port_name(topo.name, ep)
    if kind == "interface":
        return ep.iface
    return None


def segment_config(topo: Topology, seg: Segment, host: str) -> VnetConfig:
    """The vnet of `seg` on `host`: no bridge, its device named from the id, the local
    ends as ports or socket endpoints.  Checked as any vnet config is."""
    d = topo.defaults
    vid = ids.segment_id(topo, seg)
    ends = topo.local_ends(seg, host)
    ports = tuple(p for p in (port_of(topo, ep) for ep in ends) if p is not None)
    endpoints = tuple(str(ids.endpoint_spec(topo, ep)) for ep in ends
                      if topo.nodes[ep.node].kind in SOCKET_KINDS)
    cfg = VnetConfig.from_cli(vid, bridge="none", vnetif=ids.vnetif_name(vid), security=d.security,
                              encapsulation=d.encapsulation,
                              key_files=(d.key_file,) if d.key_file else (),
                              source=f"{topo.source}: {seg.name}", mtu=seg.mtu or d.mtu, ports=ports,
                              endpoints=endpoints)
    # Link control of the frames towards an end is its port's (doc/ports.md).
    for ep in ends:
        port = port_of(topo, ep)
        control = seg.control.get(ep)
        if port is not None and control is not None and control.items():
            cfg = cfg.with_link(port, control.to_link())
    return cfg


def part(topo: Topology, host: str) -> Part:
    """This host's part, every config checked (ConfigError names the segment)."""
    out = Part(host)
    for seg in topo.segments_of(host):
        cfg = segment_config(topo, seg, host)
        out.vnets[str(cfg.id)] = (seg, cfg)
        for ep in topo.local_ends(seg, host):
            if topo.nodes[ep.node].kind in NETNS_KINDS:
                port = ids.port_name(topo.name, ep)
                out.veths[port] = Veth(port, ep.node, ep.iface, cfg.mtu, str(cfg.id))
    return out


class Undo:
    """The steps of one run, undone in reverse if a later one fails."""

    def __init__(self, say: Say) -> None:
        self.steps: list[tuple[str, Callable[[], object]]] = []
        self.say = say

    def add(self, what: str, step: Callable[[], object]) -> None:
        self.steps.append((what, step))

    def run(self) -> None:
        for what, step in reversed(self.steps):
            try:
                step()
                self.say(f"rolled back: {what}")
            except Exception as e:  # keep undoing the rest; say what stays
                self.say(f"could not roll back {what}: {e}")


def apply(ctrl: Controller, topo: Topology, host: str, say: Say) -> record.Record:
    """Make this host's part of `topo` and record it; returns the record."""
    want = part(topo, host)  # every config checked before anything changes
    old = record.read(ctrl.state_dir, topo.name) or record.Record(topo.name)
    held = ctrl.store.load().vnets
    held_by_text = {str(v): cfg for v, cfg in held.items()}
    for vid in want.vnets:
        if vid in held_by_text and vid not in old.vnets:
            seg = want.vnets[vid][0]
            raise StateError(f"{topo.source}: {seg.name}: vnet {vid} exists on this host and was not "
                             f"made by topology {topo.name}; delete it or give the link another id")
    for port in want.veths:
        if port not in old.veths and netns.exists(port):
            raise StateError(f"{topo.source}: interface {port} exists on this host and was not made by "
                             f"topology {topo.name}")
    undo = Undo(say)
    try:
        for v in want.veths.values():
            node = topo.nodes[v.node]
            if netns.exists(v.port):
                held_cfg = held_by_text.get(v.vnet)
                target = netns.netns_target(node)
                if held_cfg is not None and held_cfg.mtu != v.mtu and target is not None:
                    # The vnet gives its port the new MTU; the node's end needs it too.
                    netns.set_mtu(node, v.iface, target, v.mtu)
                    undo.add(f"MTU of {v.node}:{v.iface}",
                             lambda n=node, v=v, t=target, m=held_cfg.mtu: netns.set_mtu(n, v.iface, t, m))
                    say(f"{v.node}:{v.iface}: MTU {v.mtu}")
                continue
            target = netns.netns_target(node)
            if target is None:
                say(f"node {v.node} is not running: port {v.port} waits for {v.node}:{v.iface}")
                continue
            netns.create(v.port, node, v.iface, target, v.mtu)
            undo.add(f"veth {v.port}", lambda p=v.port: netns.delete(p))
            say(f"made veth {v.port} -- {v.node}:{v.iface}")
        for vid, (seg, cfg) in sorted(want.vnets.items()):
            _apply_vnet(ctrl, seg, cfg, held_by_text.get(vid), undo, say)
    except BaseException:
        undo.run()
        raise
    # Recorded before the removals: if one fails, the next apply or destroy still knows
    # everything this lab has made here.
    record.write(ctrl.state_dir, record.Record(topo.name, host, topo.source,
                                               sorted(set(want.vnets) | set(old.vnets)),
                                               sorted(set(want.veths) | set(old.veths))))
    for vid in sorted(set(old.vnets) - set(want.vnets)):
        _delete_vnet(ctrl, vid, say)
    for port in sorted(set(old.veths) - set(want.veths)):
        if netns.delete(port):
            say(f"deleted veth {port}")
    rec = record.Record(topo.name, host, topo.source, sorted(want.vnets), sorted(want.veths))
    record.write(ctrl.state_dir, rec)
    return rec


def _sync(seg: Segment, kind: str, want, have, add, delete, undo: Undo, say: Say) -> None:
    """Add what `want` has and `have` lacks, delete what only `have` has, each step
    undoable."""
    for x in want:
        if x not in have:
            add(x)
            undo.add(f"{kind} {x}", lambda x=x: delete(x))
            say(f"{seg.name}: added {kind} {x}")
    for x in have:
        if x not in want:
            delete(x)
            undo.add(f"{kind} {x} removal", lambda x=x: add(x))
            say(f"{seg.name}: removed {kind} {x}")


def _apply_vnet(ctrl: Controller, seg: Segment, cfg: VnetConfig, held: VnetConfig | None,
                undo: Undo, say: Say) -> None:
    """Create the segment's vnet, or bring a held one to `cfg` by the smallest change."""
    if held is not None and not held.differences(cfg, ports=False, endpoints=False, keys=bool(cfg.key_files)):
        vid = str(cfg.id)
        _sync(seg, "port", cfg.ports, held.ports, lambda p: ctrl.add_port(vid, p),
              lambda p: ctrl.delete_port(vid, p), undo, say)
        _sync(seg, "endpoint", cfg.endpoints, held.endpoints, lambda e: ctrl.add_endpoint(vid, e),
              lambda e: ctrl.delete_endpoint(vid, e), undo, say)
        for p in cfg.ports:
            old_link = held.link(p) if p in held.ports else NO_LINK
            if cfg.link(p) != old_link:
                set_link(ctrl, str(cfg.id), p, cfg.link(p))
                undo.add(f"link control of port {p}", lambda p=p, o=old_link: set_link(ctrl, str(cfg.id), p, o))
                say(f"{seg.name}: port {p}: link control {cfg.link(p)}")
        ctrl.create_vnet(ctrl.find_vnet(str(cfg.id)), exist_ok=True)  # makes sure it runs
        return
    if held is not None:  # another MTU, encapsulation...: made anew
        ctrl.delete_vnet(str(cfg.id), force=True)
        undo.add(f"vnet {cfg.id} change", lambda: (ctrl.delete_vnet(str(cfg.id), force=True),
                                                    ctrl.create_vnet(held)))
        say(f"{seg.name}: vnet {cfg.id} changed ({', '.join(held.differences(cfg))}): made anew")
    ctrl.create_vnet(cfg)
    if held is None:
        undo.add(f"vnet {cfg.id}", lambda: ctrl.delete_vnet(str(cfg.id), force=True))
        say(f"{seg.name}: created vnet {cfg.id}")


def set_link(ctrl: Controller, vid: str, port: str, link: LinkControl) -> LinkControl:
    """Give `port` exactly the link control `link`, live (Controller.set_port_link)."""
    options = {name: value for name, value in link.to_sxp() if name != "suspended"}
    return ctrl.set_port_link(vid, port, clear=True, suspend=link.suspended, **options)


def _delete_vnet(ctrl: Controller, vid: str, say: Say) -> None:
    try:
        ctrl.delete_vnet(vid, force=True)
        say(f"deleted vnet {vid}")
    except StateError as e:
        if "not found" not in str(e):
            raise
    except DatapathError as e:
        if e.code != "ENOENT":
            raise


def destroy(ctrl: Controller, lab: str, say: Say) -> bool:
    """Remove what topology `lab` made on this host; False if it made nothing here."""
    rec = record.read(ctrl.state_dir, lab)
    if rec is None:
        return False
    for vid in rec.vnets:
        _delete_vnet(ctrl, vid, say)
    for port in rec.veths:
        if netns.delete(port):
            say(f"deleted veth {port}")
    record.remove(ctrl.state_dir, lab)
    return True
