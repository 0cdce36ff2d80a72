"""`vn`: the vnet command line, with the original's commands, options and record layouts.

Listings print SXP records (reference 3.5) with the 39-character ids, each followed by
a blank line, as the original did; or one aligned line per record with `vn -br` (or
$VNET_FORMAT=brief), or JSON of a documented shape with --json (vnet.cli.listing).
Every error, including one from the datapath, goes to stderr as `vn: <message>` with
exit status 1 (2 for usage errors).
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pyroute2 import IPRoute

import sxp
from vnet.cli import listing
from vnet.control import events, metrics, records
from vnet.control.controller import DATAPATH_CHOICES, Controller, Deletion, PeerAddress
from vnet.control.datapath import Record
from vnet.control.protocol import resolve_socket
from vnet.datapath.kmod import loader
from vnet.errors import VnetError
from vnet.host import bringup, netdev
from vnet.model import keys
from vnet.model.addr import parse_mac
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointSpec
from vnet.model.vnetid import InvalidVnetId, VnetId
from vnet.wire.formats import PORT

#: What a user can act on: the product's errors, and syntax errors in SXP they wrote.
#: Anything else is a bug and ends in a traceback.
KNOWN_ERRORS = (VnetError, sxp.SxpError)


class VnGroup(click.Group):
    """Reports every failure as `PROG: <message>` on stderr, PROG being `prog` (`xm`
    subclasses this group so that both tools report errors the same way)."""

    prog = "vn"

    def main(self, args=None, prog_name=None, **extra):  # type: ignore[override]
        try:
            return super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.UsageError as e:
            if e.ctx is not None:
                click.echo(e.ctx.get_usage(), err=True)
            click.echo(f"{self.prog}: {e.format_message()}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"{self.prog}: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo(f"{self.prog}: aborted", err=True)
            sys.exit(1)
        except KNOWN_ERRORS as e:
            click.echo(f"{self.prog}: {e}", err=True)
            sys.exit(1)

    def resolve_command(self, ctx, args):
        cmd_name = args[0] if args else None
        if cmd_name is not None and cmd_name not in self.commands and not cmd_name.startswith("-"):
            raise click.UsageError(f"unknown command: {cmd_name} (try 'vn help')", ctx)
        return super().resolve_command(ctx, args)


def _controller(ctx: click.Context) -> Controller:
    obj = ctx.find_root().obj
    if "controller" not in obj:
        obj["controller"] = Controller(obj["state_dir"], obj["socket"], choice=obj["datapath"])
    return obj["controller"]


def _output(ctx: click.Context, as_json: bool) -> str:
    """How a listing prints: json (--json wins), else brief or sxp (vn -br/--sxp, else
    $VNET_FORMAT, else sxp)."""
    return "json" if as_json else listing.resolve_format(ctx.find_root().obj["format"])


def _emit_sxp(recs: list[Record], width: int = 80) -> None:
    for rec in recs:
        click.echo(sxp.pretty(rec, width), nl=False)
        click.echo()


def _emit_view(ctx: click.Context, fmt: str, view: Any, brief: Callable[..., list[str]]) -> None:
    """A listing's JSON view, or the brief lines made from it (`vn -s` adds counters)."""
    if fmt == "json":
        click.echo(json.dumps(view, indent=2))
        return
    for line in brief(view, ctx.find_root().obj["stats"]):
        click.echo(line)


def _emit(ctx: click.Context, as_json: bool, recs: list[Record], view: Callable[[list[Record]], Any],
          brief: Callable[..., list[str]]) -> None:
    """Print a listing's records as SXP, or their JSON view `view`, or its brief lines."""
    fmt = _output(ctx, as_json)
    if fmt == "sxp":
        _emit_sxp(recs)
    else:
        _emit_view(ctx, fmt, view(recs), brief)


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON, of one documented shape per listing, instead of SXP records.")


def host_options(f):
    """The options that select a host and its datapath, shared by `vn` and `xm` so that
    both tools find a host the same way and say so in the same words."""
    f = click.option("--datapath", type=click.Choice(DATAPATH_CHOICES),
                     help="Datapath to command: vnetd, kmod (the kernel module), or auto: vnetd if it "
                          "answers on its socket, else the module if loaded "
                          "[default: env VNET_DATAPATH, else auto].")(f)
    f = click.option("--socket", metavar="PATH",
                     help="vnetd control socket [default: DIR/vnetd.sock; env VNET_SOCKET].")(f)
    return click.option("--state-dir", envvar="VNET_STATE_DIR", metavar="DIR",
                        help="State directory of the host to act on "
                             "[default: /var/lib/vnet; env VNET_STATE_DIR].")(f)


def config_file(path: str) -> VnetConfig:
    """A vnet config read from `path`, with a plain message if the file is missing (the
    parser's `cannot read` names the errno, which reads oddly for a mistyped name)."""
    if not os.path.exists(path):
        raise click.ClickException(f"{path}: no such config file")
    return VnetConfig.from_file(path)


@click.group(cls=VnGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@host_options
@click.option("-br", "--brief", "fmt", flag_value="brief",
              help="Print listings one line per record in aligned columns, with short ids "
                   "[default: env VNET_FORMAT, else SXP].")
@click.option("--sxp", "fmt", flag_value="sxp", help="Print listings as SXP records, as the original did.")
@click.option("-s", "--stats", is_flag=True, help="Add counters to brief listings.")
@click.pass_context
def vn(ctx: click.Context, state_dir: str | None, socket: str | None, datapath: str | None,
       fmt: str | None, stats: bool) -> None:
    """Manage vnets: private virtual Ethernet LANs across hosts."""
    ctx.obj = {"state_dir": state_dir, "socket": socket, "datapath": datapath, "format": fmt, "stats": stats}
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@vn.command("help")
@click.option("-l", "--long", "long_", is_flag=True, help="Show every command's full help.")
@click.pass_context
def help_(ctx: click.Context, long_: bool) -> None:
    """Show the commands (with -l, each one's options too)."""
    root = ctx.find_root()
    if not long_:
        click.echo(root.get_help())
        return
    click.echo(root.get_usage() + "\n")
    for name in sorted(vn.commands):
        cmd = vn.commands[name]
        with click.Context(cmd, info_name=name, parent=root) as sub:
            click.echo(sub.get_help() + "\n")


@vn.command()
@click.option("-m", "--module", "module", type=click.Path(dir_okay=False, path_type=Path),
              help="Module file [default: kmod/vnet.ko of this source tree, else the one installed "
                   "for the running kernel].")
@click.option("-a", "--address", help="Underlay IPv4 address of this namespace, kept in the state "
                   "directory [default: the kept one, else as vnetd picks it].")
@click.option("-i", "--interface", help="Underlay interface to take the address from.")
@click.argument("params", nargs=-1)
@click.pass_context
def insmod(ctx: click.Context, module: Path | None, address: str | None, interface: str | None,
           params: tuple[str, ...]) -> None:
    """Load the vnet kernel module (PARAMS: varp_mcaddr=ADDR), then restore the
    persisted vnets, peers and group into it in this network namespace."""
    params_text = " ".join(params)
    ctrl = _controller(ctx)
    address = bringup.underlay_address(address, interface)
    path = loader.insmod(module, params_text)
    click.echo(f"loaded {path}")
    # The only parameter is the group; as with vnetd, one given here wins over the persisted one.
    bringup.set_up_module(ctrl.store, resolve_socket(ctrl.socket_path, ctrl.state_dir), address,
                          group=not params_text.strip(), say=click.echo,
                          warn=lambda message: click.echo(f"vn: {message}", err=True))


@vn.command()
def rmmod() -> None:
    """Unload the vnet kernel module (its vnets go with it; bridges and the state stay)."""
    loader.rmmod()


@vn.command()
@json_option
@click.pass_context
def varp(ctx: click.Context, as_json: bool) -> None:
    """Show the VARP settings and cache (where remote MACs live)."""
    _emit(ctx, as_json, _controller(ctx).datapath.varp(), listing.varp_table, listing.brief_varp)


@vn.command("varp-flush")
@click.pass_context
def varp_flush(ctx: click.Context) -> None:
    """Forget every learned MAC location."""
    _controller(ctx).datapath.varp_flush()


@vn.command("varp-mcaddr")
@click.argument("addr")
@click.pass_context
def varp_mcaddr(ctx: click.Context, addr: str) -> None:
    """Switch the multicast group (kept across restarts)."""
    _controller(ctx).set_mcaddr(addr)


def _matches(rec: Record, wanted: list[str]) -> bool:
    if not wanted:
        return True
    rid = sxp.child_value(rec, "id")
    names = (sxp.child_value(rec, "vnetif"), sxp.child_value(rec, "bridge"))
    for w in wanted:
        if w in names:
            return True
        try:
            if str(VnetId.parse(w)) == rid:
                return True
        except InvalidVnetId:
            continue
    return False


def _device_record(ipr: IPRoute, name: str) -> Record | None:
    info = netdev.link_summary(ipr, name)
    if info is None:
        return None
    bridge = netdev.bridge_of(ipr, name)
    ports = [p for p in netdev.bridge_ports(ipr, bridge) if p != name] if bridge else []
    rec: Record = ["vnif", ["name", name]] + [[k, str(v)] for k, v in info.items()]
    rec += [["bridge", bridge or ""], ["interfaces"] + ports]
    return rec


@vn.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Also show the vifs and the VARP cache.")
@click.option("-l", "--long", "long_", is_flag=True, help="Also show each vnet device and its bridge ports.")
@json_option
@click.argument("ids", nargs=-1)
@click.pass_context
def vnets(ctx: click.Context, all_: bool, long_: bool, as_json: bool, ids: tuple[str, ...]) -> None:
    """List vnets (all, or those with the given ids, vnetif or bridge names)."""
    ctrl = _controller(ctx)
    dp = ctrl.datapath
    running = dp.vnets()
    recs = [r for r in running if _matches(r, list(ids))]
    for cfg in ctrl.not_running(running):
        if _matches(["vnet", ["id", str(cfg.id)], ["vnetif", cfg.vnetif], ["bridge", cfg.bridge]], list(ids)):
            click.echo(f"vn: vnet {cfg.id} is kept in the state but does not run (no device {cfg.vnetif}); "
                       f"'vn vnet-create --exist-ok {cfg.id}' runs it again, 'vn vnet-delete {cfg.id}' "
                       "forgets it", err=True)
    devices: dict[str, Record | None] = {}
    if long_:
        with IPRoute() as ipr:
            devices = {str(sxp.child_value(r, "id")): _device_record(ipr, str(sxp.child_value(r, "vnetif")))
                       for r in recs}
    vifs = dp.vifs() if all_ else None
    varp = dp.varp() if all_ else None
    fmt = _output(ctx, as_json)
    if fmt != "sxp":
        view = listing.vnets(recs, devices if long_ else None, vifs, varp)
        _emit_view(ctx, fmt, view, listing.brief_vnets)
        return
    for r in recs:
        if not long_:  # the original's record; the fast path's fields come with -l
            r = [x for x in r if not (isinstance(x, list) and x and x[0] in listing.PATH_FIELDS)]
        _emit_sxp([r], width=50)
        dev = devices.get(str(sxp.child_value(r, "id")))
        if dev is not None:
            _emit_sxp([dev])
    if vifs is not None and varp is not None:
        wanted = {sxp.child_value(r, "id") for r in recs}
        _emit_sxp([v for v in vifs if v[0] != "vif" or sxp.child_value(v, "vnet") in wanted] + varp)


@vn.command("vnet-create")
@click.option("-s", "--security", type=click.Choice(["none", "auth", "conf"]), help="Security level [default: none].")
@click.option("-b", "--bridge", help="Bridge to create and attach the vnet device to, or none for a "
                                     "vnet with ports only [default: vnet<id>].")
@click.option("-v", "--vnetif", help="Name of the vnet device [default: vnif<id>].")
@click.option("-e", "--encapsulation", type=click.Choice(["udp", "etherip"]),
              help="EtherIP in UDP port 1798, or raw EtherIP (IP protocol 97) [default: udp].")
@click.option("-k", "--key-file", "key_files", multiple=True, metavar="FILE",
              help="Key file of an auth or conf vnet; give it twice to hold two keys, the send key "
                   "first [default: DIR/keys/<id>.key].")
@click.option("--mtu", type=int, metavar="N",
              help="MTU of the vnet: of its device, its bridge and its ports, 68 to 65000; above "
                   "the default the outer packets are fragmented [default: 1500 udp, 1448 etherip, "
                   "less when secure].")
@click.option("-p", "--port", "ports", multiple=True, metavar="IFNAME",
              help="Attach interface IFNAME to the vnet directly, as a port (repeatable; it may "
                   "appear later).")
@click.option("--endpoint", "endpoints", multiple=True, metavar="'KIND ADDR [ADDR]'",
              help="Join a QEMU socket NIC to the vnet: 'udp LOCAL:PORT REMOTE:PORT', "
                   "'tcp-listen ADDR:PORT' or 'tcp-connect ADDR:PORT' (repeatable; doc/endpoints.md).")
@click.option("--group", metavar="ADDR",
              help="Flood the vnet's broadcasts and VARP messages to its own multicast group ADDR, "
                   "so hosts without the vnet do not receive them; every host of the vnet needs "
                   "the same group [default: the host's shared group, vn varp].")
@click.option("--exist-ok", is_flag=True,
              help="Succeed if the vnet exists with this config (and make sure it runs); still "
                   "fail if it exists with another one.")
@click.argument("vnet")
@click.pass_context
def vnet_create(ctx: click.Context, security, bridge, vnetif, encapsulation, key_files, mtu, ports,
                endpoints, group, exist_ok: bool, vnet: str) -> None:
    """Create a vnet from an id (short hex like 97, or the long form) or from FILE.sxp.

    With -b none the vnet has no bridge: only its device and its ports."""
    if vnet.endswith(".sxp") or os.path.sep in vnet:
        if (any(x is not None for x in (security, bridge, vnetif, encapsulation, mtu, group)) or key_files
                or ports or endpoints):
            raise click.UsageError("options -s/-b/-v/-e/-k/--mtu/--port/--endpoint/--group apply to an id, "
                                   "not to a config file")
        cfg = config_file(vnet)
    else:
        cfg = VnetConfig.from_cli(vnet, bridge=bridge, vnetif=vnetif, security=security,
                                  encapsulation=encapsulation,
                                  key_files=tuple(os.path.abspath(k) for k in key_files),
                                  mtu=mtu, ports=ports, endpoints=endpoints, group=group)
    _controller(ctx).create_vnet(cfg, exist_ok)


@vn.command("key-gen")
@click.option("--id", "key_id", type=click.IntRange(0, 255), default=1, show_default=True,
              help="Key id, carried on the wire; the two keys a vnet holds need different ids.")
@click.option("-f", "--force", is_flag=True, help="Replace an existing key file.")
@click.argument("file")
def key_gen(key_id: int, force: bool, file: str) -> None:
    """Write a new random key to FILE (mode 0600) for an auth or conf vnet."""
    key = keys.write_key(file, key_id, force)
    click.echo(f"wrote key {key.id} to {key.path}")


def _print_keys(ctx: click.Context, as_json: bool, cfg: VnetConfig, held: list) -> None:
    _emit(ctx, as_json, [records.keys_record(cfg.id, cfg.security, held)], listing.key_set, listing.brief_keys)


@vn.command("key-add")
@click.option("--send", is_flag=True, help="Also send with the new key at once (can drop packets "
                                           "until every host holds it).")
@json_option
@click.argument("vnet")
@click.argument("file")
@click.pass_context
def key_add(ctx: click.Context, send: bool, as_json: bool, vnet: str, file: str) -> None:
    """Make a secure vnet also accept the key in FILE (the first step of a rotation)."""
    _print_keys(ctx, as_json, *_controller(ctx).add_key(vnet, file, send))


@vn.command("key-use")
@json_option
@click.argument("vnet")
@click.argument("key_id", metavar="ID", type=click.IntRange(0, 255))
@click.pass_context
def key_use(ctx: click.Context, as_json: bool, vnet: str, key_id: int) -> None:
    """Send with the held key ID (once every host holds it)."""
    _print_keys(ctx, as_json, *_controller(ctx).use_key(vnet, key_id))


@vn.command("key-del")
@json_option
@click.argument("vnet")
@click.argument("key_id", metavar="ID", type=click.IntRange(0, 255))
@click.pass_context
def key_del(ctx: click.Context, as_json: bool, vnet: str, key_id: int) -> None:
    """Stop accepting the held key ID (not the send key)."""
    _print_keys(ctx, as_json, *_controller(ctx).delete_key(vnet, key_id))


force_option = click.option("-f", "--force", is_flag=True,
                            help="Delete even if other interfaces (VMs, containers) are on the "
                                 "vnet's bridge, and say which were cut off.")


def report_deletion(deletion: Deletion) -> None:
    """What a forced delete cut off (vn and xm say it alike)."""
    report = deletion.report()
    if report:
        click.echo(report)


@vn.command("vnet-delete")
@click.option("-b", "--bridge", "delete_bridge", is_flag=True, help="Also delete the vnet's bridge.")
@force_option
@click.argument("vnet")
@click.pass_context
def vnet_delete(ctx: click.Context, delete_bridge: bool, force: bool, vnet: str) -> None:
    """Delete a vnet, given by id, vnetif or bridge name.

    Refused while other interfaces are on its bridge, unless --force."""
    report_deletion(_controller(ctx).delete_vnet(vnet, delete_bridge, force))


@vn.command("vnet-list")
@click.option("-l", "--long", "long_", is_flag=True, help="Print each vnet's configuration.")
@json_option
@click.argument("ids", nargs=-1)
@click.pass_context
def vnet_list(ctx: click.Context, long_: bool, as_json: bool, ids: tuple[str, ...]) -> None:
    """List the persisted vnets (ids, or configurations with -l or ids)."""
    ctrl = _controller(ctx)
    cfgs = [ctrl.find_vnet(i) for i in ids] if ids else ctrl.vnet_configs()
    fmt = _output(ctx, as_json)
    if fmt != "sxp":
        _emit_view(ctx, fmt, listing.configs([c.to_sxp() for c in cfgs]), listing.brief_configs)
    elif long_ or ids:
        for c in cfgs:
            click.echo(sxp.pretty(c.to_sxp()))
    else:
        for c in cfgs:
            click.echo(str(c.id))


@vn.command()
@json_option
@click.argument("vnet", required=False)
@click.pass_context
def ports(ctx: click.Context, as_json: bool, vnet: str | None) -> None:
    """List the ports of every vnet (or of VNET): attached, or waiting for their interface,
    and their link control (suspended, impairments: vn port-set)."""
    ctrl = _controller(ctx)
    recs = _of_vnet(ctrl, ctrl.ports(), vnet)
    _emit(ctx, as_json, recs, listing.ports, listing.brief_ports)


def _of_vnet(ctrl: Controller, recs: list, vnet: str | None) -> list:
    """The records of the vnet the user named (an id or a device name), or all."""
    if vnet is None:
        return recs
    wanted = str(ctrl.find_vnet(vnet).id)
    return [r for r in recs if sxp.child_value(r, "vnet") == wanted]


@vn.command("port-add")
@click.argument("vnet")
@click.argument("ifname")
@click.pass_context
def port_add(ctx: click.Context, vnet: str, ifname: str) -> None:
    """Attach interface IFNAME to VNET as a port: every frame it receives crosses the vnet
    unchanged (pause frames aside).  It may not exist yet; it is attached whenever an
    interface of that name appears."""
    _controller(ctx).add_port(vnet, ifname)


@vn.command("port-del")
@click.argument("vnet")
@click.argument("ifname")
@click.pass_context
def port_del(ctx: click.Context, vnet: str, ifname: str) -> None:
    """Detach port IFNAME from VNET; the interface stays."""
    _controller(ctx).delete_port(vnet, ifname)


@vn.command("port-set")
@click.argument("vnet")
@click.argument("ifname")
@click.option("--loss", metavar="PCT", help="Drop this percentage of the frames sent out of the port (0-100).")
@click.option("--delay", metavar="MS", help="Hold each frame sent out of the port this many milliseconds.")
@click.option("--jitter", metavar="MS", help="Vary the delay by up to this many milliseconds either way "
              "(uniformly; never below 0).")
@click.option("--corrupt", metavar="PCT", help="Flip one random bit in this percentage of the frames.")
@click.option("--rate", metavar="RATE", help="Limit the frames sent out of the port to RATE, as tc writes "
              "it (10mbit, 512kbit, 1gbit); excess beyond a short queue is dropped.")
@click.option("--suspend", "suspend", flag_value=True, default=None,
              help="Suspend the port: nothing taken from it, nothing sent out of it.")
@click.option("--resume", "suspend", flag_value=False, help="Resume a suspended port.")
@click.option("--clear", is_flag=True, help="Remove every impairment first (not the suspension).")
@click.pass_context
def port_set(ctx: click.Context, vnet: str, ifname: str, loss: str | None, delay: str | None,
             jitter: str | None, corrupt: str | None, rate: str | None, suspend: bool | None,
             clear: bool) -> None:
    """Change the link control of port IFNAME of VNET, live, and keep it: impairments act
    on the frames sent out of the port (towards the node behind it); 0 or `none` removes
    one. See doc/ports.md, "Link control"."""
    link = _controller(ctx).set_port_link(vnet, ifname, clear=clear, suspend=suspend, loss=loss,
                                          delay=delay, jitter=jitter, corrupt=corrupt, rate=rate)
    click.echo(f"port {ifname}: {link}")


@vn.command()
@json_option
@click.argument("vnet", required=False)
@click.pass_context
def endpoints(ctx: click.Context, as_json: bool, vnet: str | None) -> None:
    """List the socket endpoints of every vnet (or of VNET): connected, listening for the
    VM's QEMU, or waiting to connect to it again."""
    ctrl = _controller(ctx)
    recs = _of_vnet(ctrl, ctrl.datapath.endpoints(), vnet)
    _emit(ctx, as_json, recs, listing.endpoints, listing.brief_endpoints)


def _endpoint_spec(kind: str, addrs: tuple[str, ...]) -> EndpointSpec:
    return EndpointSpec.parse([kind, *addrs])  # EndpointError names the fault


@vn.command("endpoint-add")
@click.argument("vnet")
@click.argument("kind", metavar="KIND")
@click.argument("addrs", metavar="ADDR [ADDR]", nargs=-1, required=True)
@click.pass_context
def endpoint_add(ctx: click.Context, vnet: str, kind: str, addrs: tuple[str, ...]) -> None:
    """Join a VM's QEMU socket NIC to VNET: KIND is udp (LOCAL:PORT we bind, then the VM's
    REMOTE:PORT), tcp-listen (ADDR:PORT we listen on) or tcp-connect (the VM's ADDR:PORT
    we connect to, again whenever the link drops).  See doc/endpoints.md."""
    _controller(ctx).add_endpoint(vnet, _endpoint_spec(kind, addrs))


@vn.command("endpoint-del")
@click.argument("vnet")
@click.argument("kind", metavar="KIND")
@click.argument("addrs", metavar="ADDR [ADDR]", nargs=-1, required=True)
@click.pass_context
def endpoint_del(ctx: click.Context, vnet: str, kind: str, addrs: tuple[str, ...]) -> None:
    """Close the endpoint of VNET written as to endpoint-add."""
    _controller(ctx).delete_endpoint(vnet, _endpoint_spec(kind, addrs))


@vn.command()
@json_option
@click.pass_context
def vifs(ctx: click.Context, as_json: bool) -> None:
    """List the MACs this host holds on each vnet."""
    _emit(ctx, as_json, _controller(ctx).datapath.vifs(), listing.vif_table, listing.brief_vifs)


def _vif_mac(interface: bool, value: str) -> bytes:
    if not interface:
        return parse_mac(value)
    with IPRoute() as ipr:
        mac = netdev.link_mac(ipr, value)
    if mac is None:
        raise click.ClickException(f"interface not found: {value}")
    return parse_mac(mac)


@vn.command("vif-add")
@click.option("-i", "--interface", is_flag=True, help="Take the MAC from the named interface.")
@click.argument("vnet")
@click.argument("vmac")
@click.pass_context
def vif_add(ctx: click.Context, interface: bool, vnet: str, vmac: str) -> None:
    """Declare a MAC local on a vnet (so VARP requests for it are answered)."""
    _controller(ctx).datapath.vif_add(VnetId.parse(vnet), _vif_mac(interface, vmac))


@vn.command("vif-delete")
@click.option("-i", "--interface", is_flag=True, help="Take the MAC from the named interface.")
@click.argument("vnet")
@click.argument("vmac")
@click.pass_context
def vif_delete(ctx: click.Context, interface: bool, vnet: str, vmac: str) -> None:
    """Forget a local MAC on a vnet."""
    _controller(ctx).datapath.vif_del(VnetId.parse(vnet), _vif_mac(interface, vmac))


@vn.command()
@json_option
@click.pass_context
def peers(ctx: click.Context, as_json: bool) -> None:
    """List the peers multicast is forwarded to."""
    _emit(ctx, as_json, _controller(ctx).datapath.peers(), listing.peers, listing.brief_peers)


@vn.command("peer-add")
@click.option("-p", "--port", type=click.IntRange(1, 65535), default=PORT, show_default=True,
              help="The peer's vnet UDP port.")
@click.argument("addr")
@click.pass_context
def peer_add(ctx: click.Context, port: int, addr: str) -> None:
    """Forward multicast to, and accept it from, the host ADDR (name or address).

    Configure peers on one host per subnet.  A name is resolved once, to its first IPv4
    address; the peer is that address."""
    _say_resolved(_controller(ctx).add_peer(addr, port))


def _say_resolved(peer: PeerAddress) -> None:
    if peer.name:
        click.echo(f"resolved {peer.name} to {peer.addr}")


@vn.command("peer-delete")
@click.argument("addr")
@click.pass_context
def peer_delete(ctx: click.Context, addr: str) -> None:
    """Stop forwarding to a peer."""
    _say_resolved(_controller(ctx).delete_peer(addr))


@vn.command()
@click.option("-l", "--long", "long_", is_flag=True, help="Show each bridge's device details.")
@json_option
@click.pass_context
def bridges(ctx: click.Context, long_: bool, as_json: bool) -> None:
    """List the bridges on this host and their ports."""
    fmt = _output(ctx, as_json)
    with IPRoute() as ipr:
        found = netdev.bridges(ipr)
        if fmt != "sxp":
            # Brief lines show each bridge's state, so they need its device too.
            links = {b: netdev.link_summary(ipr, b) for b in found} if long_ or fmt == "brief" else None
            _emit_view(ctx, fmt, listing.bridges(found, links),
                       lambda view, counters: listing.brief_bridges(view, counters, long_))
            return
        for b, ports in sorted(found.items()):
            click.echo(f"{b} : {', '.join(ports)}" if ports else b)
            if long_:
                info = netdev.link_summary(ipr, b) or {}
                for k, v in info.items():
                    click.echo(f"          {k}: {v}")


@vn.command(context_settings={"ignore_unknown_options": False})
@click.option("-w", "--write", metavar="FILE", help="Write the pcapng to FILE [default: stdout, "
                                                   "written per packet when it is a pipe].")
@click.option("-c", "--count", type=click.IntRange(min=1), metavar="N", help="Stop after N packets.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop after SECONDS.")
@click.option("-i", "--interface", "points", multiple=True, metavar="POINT",
              help="Capture only at POINT: tunnel, port:IFNAME, bridge:IFNAME, endpoint:KIND:ADDR, or "
                   "a bare interface name (repeatable) [default: every point of the vnet].")
@click.option("--underlay", is_flag=True, help="Capture the vnet's encapsulated packets on the "
                                               "underlay interface instead.")
@click.option("--decrypt", is_flag=True, help="With --underlay on a conf vnet: write the frames of the "
                                              "sealed packets opened with the vnet's key.")
@click.option("--host-name", metavar="NAME", help="This host's name in the interface names "
                                                  "(NAME/VNET/POINT) [default: the hostname].")
@click.argument("vnet")
@click.argument("expression", nargs=-1, metavar="[FILTER]...")
@click.pass_context
def capture(ctx: click.Context, write: str | None, count: int | None, duration: float | None,
            points: tuple[str, ...], underlay: bool, decrypt: bool, host_name: str | None, vnet: str,
            expression: tuple[str, ...]) -> None:
    """Capture the frames of VNET on this host as pcapng (doc/capture.md), at every
    point where they cross: the vnet device (tunnel), its ports, bridge members and
    socket endpoints; FILTER is a tcpdump expression.  Stops on --count, --duration,
    Ctrl-C or a closed pipe, and says on stderr what it wrote and what was dropped."""
    from vnet.capture.run import Request
    from vnet.capture.run import capture as run_capture

    run_capture(_controller(ctx), Request(vnet, write, count, duration, points, underlay, decrypt,
                                          " ".join(expression), host_name),
                lambda line: click.echo(f"vn capture: {line}", err=True))


@vn.command()
@json_option
@click.option("--prometheus", is_flag=True,
              help="Print every counter and table size in the Prometheus text format "
                   "(doc/metrics.md), as node_exporter's textfile collector reads it.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool, prometheus: bool) -> None:
    """Show datapath counters, including dropped packets by reason."""
    if prometheus:
        if as_json:
            raise click.UsageError("--json and --prometheus are two formats: give one", ctx)
        click.echo(metrics.render(_controller(ctx).datapath), nl=False)
        return
    _emit(ctx, as_json, _controller(ctx).datapath.stats(), listing.stats, listing.brief_stats)


@vn.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print each event as one JSON object per line (doc/schema/monitor.json).")
@click.pass_context
def monitor(ctx: click.Context, as_json: bool) -> None:
    """Print events on this host as they happen, one per line, until interrupted: MACs
    learned, moved and expired, flapping MACs, peers up and down, and drops by reason
    (at most one line per reason every 5 s).  See doc/monitor.md."""
    dp = _controller(ctx).datapath

    def emit(event: events.Event) -> None:
        click.echo(json.dumps(event) if as_json else events.render(event))
        sys.stdout.flush()

    def opened() -> None:
        click.echo(f"vn: monitoring the {dp.kind} datapath (Ctrl-C to stop)", err=True)

    try:
        events.watch(dp, emit, opened)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # the reader went away (`vn monitor | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# `vn topo`: imported last, as it uses the helpers above.
from vnet.cli.topo import topo  # noqa: E402

vn.add_command(topo)


def main() -> None:
    vn(prog_name="vn")


if __name__ == "__main__":
    main()
