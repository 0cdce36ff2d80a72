"""network-vnet: bring a host's vnet datapath up at boot and down at shutdown, in the
style of xend's network scripts (`network-vnet start|stop|status`, reference section 7).

Xen's network-vnet only inserted the module and left vnets to xend.  Here the
vnets and peers persist in the state directory, so `start` brings up whichever
datapath the host can run (the kernel module if it can be loaded, else vnetd) and
restores them; `stop` takes them down and keeps them persisted, so the next `start`
(or boot) brings them back; `status` says what runs, with LSB's exit codes, so init
systems and scripts can ask.  Each is idempotent because boot and shutdown sequences
repeat themselves: `start` on a running host changes nothing, `stop` on a stopped one
is not an error.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
from pyroute2 import IPRoute

import sxp
from vnet.cli.vn import VnGroup, host_options
from vnet.control.controller import resolve_choice
from vnet.control.datapath import Datapath, Record
from vnet.control.protocol import VnetdClient, resolve_socket
from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import loader
from vnet.errors import DatapathError
from vnet.host import bringup, netdev, privilege, service
from vnet.model.state import State, StateStore, resolve_state_dir

PROG = "network-vnet"
#: LSB init-script status codes: running, and "program is not running".
RUNNING, STOPPED = 0, 3
TIMEOUT = 30.0


def say(message: str) -> None:
    click.echo(f"{PROG}: {message}")


def warn(message: str) -> None:
    click.echo(f"{PROG}: {message}", err=True)


class HookGroup(VnGroup):
    """`vn`'s error reporting under the name network-vnet, with an xend-style usage
    error for anything but start, stop and status."""

    prog = PROG

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else None
        if name is not None and name not in self.commands and not name.startswith("-"):
            raise click.UsageError(f"unknown command: {name} (expected start, stop or status)", ctx)
        return super().resolve_command(ctx, args)


@dataclass
class HostSetup:
    """What network-vnet acts on: a state directory, the datapath choice, and the
    vnetd socket, pidfile and log that belong to that state directory."""

    store: StateStore
    choice: str
    sock: Path
    pidfile: Path
    log: Path

    @classmethod
    def from_options(cls, state_dir: str | None, socket: str | None, datapath: str | None,
                     pidfile: str | None) -> HostSetup:
        sdir = resolve_state_dir(state_dir)
        return cls(StateStore(sdir), resolve_choice(datapath), resolve_socket(socket, sdir),
                   Path(pidfile) if pidfile else sdir / service.PIDFILE_NAME, sdir / service.LOG_NAME)

    @property
    def dir(self) -> Path:
        return self.store.dir


DATAPATH_HELP = ("Datapath to start, stop or show: kmod (the kernel module), vnetd, or auto: for "
                 "start, the module if it is loaded or loads, else vnetd; for stop and status, vnetd "
                 "if it answers on its socket, else the module [default: env VNET_DATAPATH, else auto].")


def hook_options(f: Callable) -> Callable:
    """`vn`'s host options plus vnetd's pidfile, after the subcommand (xend style:
    `network-vnet start --state-dir DIR`); they make a `HostSetup`."""
    f = click.option("--pidfile", metavar="FILE",
                     help="vnetd's pidfile [default: DIR/vnetd.pid].")(f)
    f = host_options(f)
    for param in f.__click_params__:  # type: ignore[attr-defined]
        if param.name == "datapath":  # auto means more here than in vn: start may load the module
            param.help = DATAPATH_HELP
    return f


params_argument = click.argument("params", nargs=-1, metavar="[varp_mcaddr=ADDR]")


@click.group(cls=HookGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def network_vnet(ctx: click.Context) -> None:
    """Start, stop or show this host's vnet datapath and its persisted vnets."""
    if ctx.invoked_subcommand is None:
        raise click.UsageError("missing command (expected start, stop or status)", ctx)


# ---- start ---------------------------------------------------------------------------

@network_vnet.command()
@hook_options
@click.option("-a", "--address", metavar="ADDR",
              help="Underlay IPv4 address, kept in the state directory [default: the kept one, "
                   "else as vnetd picks it].")
@click.option("-i", "--interface", metavar="IFACE", help="Underlay interface to take the address from.")
@click.option("-m", "--module", type=click.Path(dir_okay=False, path_type=Path),
              help="Module file [default: as 'vn insmod'].")
@click.option("--timeout", type=click.FloatRange(min=1), default=TIMEOUT, show_default=True,
              help="Seconds to wait for vnetd to answer.")
@params_argument
def start(state_dir: str | None, socket: str | None, datapath: str | None, pidfile: str | None,
          address: str | None, interface: str | None, module: Path | None, timeout: float,
          params: tuple[str, ...]) -> None:
    """Bring up the datapath (the module if it loads, else vnetd) and restore the
    persisted vnets and peers; nothing changes if it runs already."""
    host = HostSetup.from_options(state_dir, socket, datapath, pidfile)
    params_text = loader.module_params(" ".join(params))
    address = bringup.underlay_address(address, interface)
    # Before anything: unprivileged, loading the module fails and so would vnetd.
    privilege.require("start", privilege.CAP_NET_ADMIN)
    pid = service.running_pid(host.sock, host.pidfile)
    if pid is not None:
        if host.choice == "kmod":
            raise DatapathError("EBUSY", f"vnetd (pid {pid}) serves {host.dir}; stop it first "
                                f"with '{PROG} stop'")
        if service.socket_pid(host.sock) != pid:
            raise DatapathError("EBUSY", f"vnetd (pid {pid}, {host.pidfile}) runs but does not answer "
                                f"on {host.sock}; stop it with '{PROG} stop'")
        say(f"already running: vnetd (pid {pid}) on {host.sock}")
        return
    if host.choice != "vnetd" and _start_module(host, module, params_text, address):
        return
    _start_vnetd(host, address, params_text, timeout)


def _start_module(host: HostSetup, module: Path | None, params: str, address: str | None) -> bool:
    """Load the module (unless loaded) and restore what this namespace lacks.  False if
    it cannot be loaded and `auto` may fall back to vnetd."""
    loaded_now = False
    if kmod.module_loaded():
        with kmod.KmodClient() as dp:
            todo = bringup.missing(dp, host.store.load())
        if not (todo.vnets or todo.peers or address):
            say(f"already running: the vnet module serves {host.dir} in this network namespace")
            return True
        say("the vnet module is loaded; setting up this network namespace")
    else:
        try:
            path = loader.insmod(module, params)
            loaded_now = True
            say(f"loaded {path}")
        except DatapathError as e:
            if e.code != "EEXIST":  # EEXIST: loaded meanwhile, so use it
                if host.choice == "kmod":
                    raise
                say(f"cannot load the vnet module ({e.message}); starting vnetd")
                return False
    # A group given as a parameter wins over the persisted one, as with 'vn insmod'.
    bringup.set_up_module(host.store, host.sock, address, group=not (loaded_now and params),
                          say=say, warn=warn)
    return True


def _start_vnetd(host: HostSetup, address: str | None, params: str, timeout: float) -> None:
    """Start vnetd detached on the host's state and say what came back."""
    state = host.store.load()  # an unreadable state file fails here, before anything starts
    args = ["--state-dir", str(host.dir)]
    kept = state.settings.get("address")
    if address:
        args += ["-a", address]
    elif kept and _is_local(kept):
        args += ["-a", kept]
    elif kept:
        warn(f"the kept underlay address {kept} is not an address of this host; vnetd picks one")
    if params:
        args += ["-m", params.partition("=")[2]]
    pid = service.start(args, host.sock, host.pidfile, host.log, timeout)
    say(f"started vnetd (pid {pid}) on {host.sock}; log {host.log}")
    if address and address != kept:
        with host.store.transaction() as st:
            st.settings["address"] = address
        say(f"underlay address {address}")
    if not (state.vnets or state.peers):
        return
    todo = bringup.missing(VnetdClient(host.sock), state)
    for cfg in todo.vnets.values():
        warn(f"vnet {cfg.id} was not restored; see {host.log}")
    for addr in todo.peers:
        warn(f"peer {addr} was not restored; see {host.log}")
    say(f"restored {len(state.vnets) - len(todo.vnets)} of {len(state.vnets)} vnets and "
        f"{len(state.peers) - len(todo.peers)} of {len(state.peers)} peers from {host.dir}")


def _is_local(addr: str) -> bool:
    with IPRoute() as ipr:
        return any(a == addr for _, a, _, _ in netdev.ipv4_addresses(ipr))


# ---- stop ----------------------------------------------------------------------------

@network_vnet.command()
@hook_options
@click.option("--unload", is_flag=True, help="Also unload the vnet module (every network "
                                             "namespace loses its vnets).")
@click.option("--timeout", type=click.FloatRange(min=1), default=TIMEOUT, show_default=True,
              help="Seconds to wait for vnetd to exit before killing it.")
@params_argument
def stop(state_dir: str | None, socket: str | None, datapath: str | None, pidfile: str | None,
         unload: bool, timeout: float, params: tuple[str, ...]) -> None:
    """Take the datapath's vnets and peers down; they stay persisted for the next start."""
    host = HostSetup.from_options(state_dir, socket, datapath, pidfile)
    loader.module_params(" ".join(params))  # the same line as for start: checked, not needed
    pid = service.running_pid(host.sock, host.pidfile) if host.choice != "kmod" else None
    if pid is not None:
        if service.stop(pid, host.pidfile, timeout):
            say(f"stopped vnetd (pid {pid}); the vnets and peers stay persisted in {host.dir}")
        else:
            warn(f"vnetd (pid {pid}) did not exit within {timeout:g} s of SIGTERM: killed it")
    elif host.choice != "vnetd" and kmod.module_loaded():
        with kmod.KmodClient() as dp:
            vnets, peers, failed = bringup.take_down(dp)
        for message in failed:
            warn(message)
        if vnets or peers:
            say(f"took {vnets} vnets and {peers} peers out of the vnet module in this network "
                f"namespace; they stay persisted in {host.dir}")
        elif not unload:
            say("not running: the vnet module runs no vnets or peers in this network namespace")
        if failed:
            raise SystemExit(1)
    else:
        if service.read_pidfile(host.pidfile) is not None:
            try:
                host.pidfile.unlink(missing_ok=True)
            except PermissionError:
                raise DatapathError("EPERM", f"cannot remove the stale pidfile {host.pidfile}: "
                                    f"{service.STOP_NEEDS}") from None
            say(f"removed the stale pidfile {host.pidfile}")
        say("not running")
    if unload and host.choice != "vnetd" and kmod.module_loaded():
        loader.rmmod()
        say("unloaded the vnet module")


# ---- status --------------------------------------------------------------------------

@network_vnet.command()
@hook_options
@params_argument
def status(state_dir: str | None, socket: str | None, datapath: str | None, pidfile: str | None,
           params: tuple[str, ...]) -> None:
    """Show the datapath in use and the vnets and peers, in service and persisted.
    Exit status 0 if running, 3 if stopped (LSB)."""
    host = HostSetup.from_options(state_dir, socket, datapath, pidfile)
    loader.module_params(" ".join(params))
    state = host.store.load()
    dp, facts = _serving(host, state)
    click.echo(f"{PROG}: {'running (' + dp.kind + ')' if dp else 'stopped'}")
    for key, value in [("datapath", dp.kind if dp else "none"), *facts, ("state", str(host.dir))]:
        click.echo(f"{key}: {value}")
    running_vnets = dp.vnets() if dp else []
    running_peers = dp.peers() if dp else []
    for line in _vnet_lines(state, running_vnets) + _peer_lines(state, running_peers):
        click.echo(line)
    if dp is None:
        raise SystemExit(STOPPED)


def _serving(host: HostSetup, state: State) -> tuple[Datapath | None, list[tuple[str, str]]]:
    """The datapath serving the host, if any, and what to say about it."""
    pid = service.socket_pid(host.sock)
    recorded = service.read_pidfile(host.pidfile)
    if pid is not None and host.choice != "kmod":
        dp: Datapath = VnetdClient(host.sock)
        if recorded == pid:
            pidnote = ""
        elif recorded:
            pidnote = f" (names pid {recorded}, not this vnetd)"
        else:
            pidnote = " (none: this vnetd was not started by network-vnet)"
        return dp, [("pid", str(pid)), ("socket", str(host.sock)), ("pidfile", f"{host.pidfile}{pidnote}"),
                    ("log", str(host.log)), *_underlay(dp)]
    facts = []
    if pid is not None:
        facts.append(("vnetd", f"pid {pid} on {host.sock}, not the datapath asked for"))
    elif recorded is not None and service.pid_alive(recorded) and service.is_vnetd(recorded):
        facts.append(("pidfile", f"{host.pidfile} (pid {recorded} runs but does not answer on {host.sock})"))
    elif recorded is not None:
        facts.append(("pidfile", f"{host.pidfile} (stale: no vnetd runs as pid {recorded})"))
    if host.choice == "vnetd" or not kmod.module_loaded():
        return None, facts
    dp = kmod.KmodClient()
    if dp.vnets() or dp.peers() or not (state.vnets or state.peers):
        return dp, [("module", "loaded"), *_underlay(dp), *facts]
    dp.close()
    return None, [("module", "loaded, with none of these vnets or peers in this network namespace"), *facts]


def _underlay(dp: Datapath) -> list[tuple[str, str]]:
    varp = next((r for r in dp.varp() if r[0] == "varp"), None)
    if varp is None:
        return []
    return [("underlay", f"{sxp.child_value(varp, 'ucast_addr')} (group {sxp.child_value(varp, 'mcast_addr')})")]


def _where(persisted: bool, running: bool) -> str:
    if persisted:
        return "in service" if running else "persisted, not in service"
    return "in service, not persisted"


def _vnet_lines(state: State, running: list[Record]) -> list[str]:
    live = {str(sxp.child_value(r, "id")): r for r in running}
    kept = {str(v): c for v, c in state.vnets.items()}
    lines = []
    for vid in sorted(set(live) | set(kept)):
        if vid in live:
            vnetif, bridge = sxp.child_value(live[vid], "vnetif"), sxp.child_value(live[vid], "bridge")
        else:
            vnetif, bridge = kept[vid].vnetif, kept[vid].bridge or "none"
        lines.append(f"vnet {vid} (vnetif {vnetif}, bridge {bridge}): {_where(vid in kept, vid in live)}")
    return lines


def _peer_lines(state: State, running: list[Record]) -> list[str]:
    live = {str(sxp.child_value(r, "addr")): sxp.child_value(r, "port") for r in running}
    ports = {**{a: str(p) for a, p in state.peers.items()}, **live}
    return [f"peer {addr} (port {ports[addr]}): {_where(addr in state.peers, addr in live)}"
            for addr in sorted(ports, key=lambda a: tuple(int(x) for x in a.split(".")))]


def main() -> None:
    network_vnet.main(prog_name=PROG)


if __name__ == "__main__":
    main()
