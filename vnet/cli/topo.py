"""`vn topo`: build this host's part of a lab described in one file (doc/topology.md)."""
from __future__ import annotations

import json
import shlex

import click

from vnet.cli import listing
from vnet.control.controller import Controller
from vnet.errors import VnetError
from vnet.topo import apply as topo_apply
from vnet.topo import graph as topo_graph
from vnet.topo import hypervisor, load, show
from vnet.topo.model import Topology

hosts_option = click.option("--hosts", "hosts_file", metavar="MAPFILE",
                            help="With a containerlab file: the YAML that says which host runs "
                                 "each node, and the hosts' addresses (doc/topology.md).")
host_option = click.option("--host", "host", metavar="NAME",
                           help="This host's name in the file [default: the host whose underlay "
                                "address this host has].")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (doc/topology.md gives its shape).")


def _controller(ctx: click.Context) -> Controller:
    """The host `vn`'s options select (vnet.cli.vn keeps one per command line; this
    module must not import it, since vn imports this one)."""
    obj = ctx.find_root().obj
    if "controller" not in obj:
        obj["controller"] = Controller(obj["state_dir"], obj["socket"], choice=obj["datapath"])
    return obj["controller"]


def _load(path: str, hosts_file: str | None) -> Topology:
    return load.load(path, hosts_file)


def _say(line: str) -> None:
    click.echo(line)


@click.group()
def topo() -> None:
    """Build this host's part of a lab described in one topology file."""


@topo.command("apply")
@host_option
@hosts_option
@click.argument("file")
@click.pass_context
def apply_(ctx: click.Context, host: str | None, hosts_file: str | None, file: str) -> None:
    """Make this host's part of the topology in FILE: a vnet per link or LAN with an end
    here, veths into namespace nodes, ports, socket endpoints.  Again: changes only
    what changed, and removes what the file no longer has."""
    t = _load(file, hosts_file)
    ctrl = _controller(ctx)
    me = topo_apply.local_host(t, host)
    rec = topo_apply.apply(ctrl, t, me, _say)
    click.echo(f"topology {t.name}: host {me} runs {len(rec.vnets)} vnet(s), {len(rec.veths)} veth(s)")


@topo.command()
@hosts_option
@click.argument("file")
@click.pass_context
def destroy(ctx: click.Context, hosts_file: str | None, file: str) -> None:
    """Remove what the topology in FILE made on this host (vnets, veths, its record)."""
    t = _load(file, hosts_file)
    if not topo_apply.destroy(_controller(ctx), t.name, _say):
        click.echo(f"topology {t.name} made nothing on this host")


@topo.command("show")
@host_option
@hosts_option
@json_option
@click.argument("file")
@click.pass_context
def show_(ctx: click.Context, host: str | None, hosts_file: str | None, as_json: bool, file: str) -> None:
    """Show every link and LAN of FILE: its vnet, its ends, their hosts and states (up,
    waiting for its interface, unreachable peer host)."""
    t = _load(file, hosts_file)
    try:
        me: str | None = topo_apply.local_host(t, host)
    except VnetError:
        if host is not None:
            raise
        me = None
    ports: list = []
    endpoints: list = []
    varp: list = []
    if me is not None:
        try:
            dp = _controller(ctx).datapath
            ports = listing.ports(dp.ports())
            endpoints = listing.endpoints(dp.endpoints())
            varp = listing.varp_table(dp.varp())["entries"]
        except VnetError as e:
            click.echo(f"vn: the datapath does not answer ({e}): local ends shown as not applied", err=True)
    view = show.status(t, me, ports, endpoints, varp)
    if as_json:
        click.echo(json.dumps({"name": t.name, "host": me, "segments": view}, indent=2))
    else:
        for line in show.brief(view):
            click.echo(line)


@topo.command()
@hosts_option
@click.option("--format", "fmt", type=click.Choice(topo_graph.FORMATS), default="dot", show_default=True,
              help="dot text, or an image drawn by Graphviz's dot.")
@click.option("-o", "--output", metavar="OUT", help="Write to OUT [default: stdout].")
@click.argument("file")
def graph(hosts_file: str | None, fmt: str, output: str | None, file: str) -> None:
    """Draw the topology in FILE: Graphviz dot text, or SVG/PNG with Graphviz installed."""
    text = topo_graph.dot(_load(file, hosts_file))
    if fmt == "dot" and not output:
        click.echo(text, nl=False)
        return
    data = text.encode() if fmt == "dot" else topo_graph.render(text, fmt)
    if output:
        with open(output, "wb") as f:
            f.write(data)
    else:
        out = click.get_binary_stream("stdout")
        out.write(data)
        out.flush()


@topo.command("hypervisor")
@hosts_option
@click.option("--libvirt", "want", flag_value="libvirt", help="Print libvirt <interface> XML.")
@click.option("--qemu", "want", flag_value="qemu", help="Print QEMU -netdev/-device arguments.")
@click.argument("file")
@click.argument("node")
def hypervisor_(hosts_file: str | None, want: str | None, file: str, node: str) -> None:
    """Print what libvirt domain or QEMU VM NODE needs for its NICs to join its links:
    <interface> XML (libvirt nodes) or -netdev/-device arguments (qemu nodes)."""
    t = _load(file, hosts_file)
    kind = want or (t.nodes[node].kind if node in t.nodes else "qemu")
    if kind == "libvirt":
        click.echo(hypervisor.libvirt_xml(t, node), nl=False)
    else:
        click.echo(" ".join(shlex.quote(a) for a in hypervisor.qemu_args(t, node)))


@topo.group()
def link() -> None:
    """Change a link of the running lab (link control: doc/ports.md)."""


@link.command("set")
@host_option
@hosts_option
@click.option("--towards", "towards", metavar="NODE:IF",
              help="Only the direction towards this end [default: every direction].")
@click.option("--loss", metavar="PCT", help="Drop this percentage of the frames (0-100).")
@click.option("--delay", metavar="MS", help="Hold each frame this many milliseconds.")
@click.option("--jitter", metavar="MS", help="Vary the delay by up to this many milliseconds either way.")
@click.option("--corrupt", metavar="PCT", help="Flip one random bit in this percentage of the frames.")
@click.option("--rate", metavar="RATE", help="Limit the rate, as tc writes it (10mbit, 512kbit, 1gbit).")
@click.option("--suspend", "suspend", flag_value=True, default=None,
              help="Suspend the link: it carries nothing, either way.")
@click.option("--resume", "suspend", flag_value=False, help="Resume a suspended link.")
@click.option("--clear", is_flag=True, help="Remove every impairment first (not the suspension).")
@click.argument("file")
@click.argument("which", metavar="LINK")
@click.pass_context
def link_set(ctx: click.Context, host: str | None, hosts_file: str | None, towards: str | None,
             loss: str | None, delay: str | None, jitter: str | None, corrupt: str | None,
             rate: str | None, suspend: bool | None, clear: bool, file: str, which: str) -> None:
    """Change the link control of LINK (one of its ends, NODE:IF, or a LAN's name) live,
    on this host's ends: impairments act on the frames sent towards an end, so each
    direction is set on the host of the end it goes to; suspending one end stops the
    link both ways.  Applying the file again sets the file's values back."""
    from vnet.topo import linkset

    t = _load(file, hosts_file)
    me = topo_apply.local_host(t, host)
    done = linkset.set_link(_controller(ctx), t, me, which, towards, clear=clear, suspend=suspend,
                            loss=loss, delay=delay, jitter=jitter, corrupt=corrupt, rate=rate)
    for line in done:
        click.echo(line)
