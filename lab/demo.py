"""The demo: three simulated hosts, two vnets, VMs pinging within a vnet and not across.

Everything runs on this machine in network namespaces: an underlay switch, three hosts
each running vnetd with its own state directory, and "VMs" (namespaces with a veth on
a vnet bridge).  Everything it made is removed at the end, also on Ctrl-C.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from lab.lab import Lab, cleanup_stale
from lab.vnethost import VnetHost

EXAMPLES = Path(__file__).resolve().parent.parent / "doc" / "examples"


def say(text: str) -> None:
    click.secho(f"\n== {text}", bold=True)


def shell(host: VnetHost, *args: str) -> None:
    click.secho(f"[{host.name}]# vn {' '.join(args)}", fg="cyan")
    r = host.vn(*args)
    click.echo(r.stdout.rstrip())


def ping(lab: Lab, src, dst, expect: bool) -> bool:
    r = lab.ping(src, dst.ip, count=3, interval=0.2, timeout=3)
    got = r.received > 0
    mark = "ok " if got == expect else "FAIL"
    verdict = "reaches" if got else "cannot reach"
    click.echo(f"  [{mark}] {src.name} ({src.ip}) {verdict} {dst.name} ({dst.ip}): "
               f"{r.received}/{r.transmitted} replies")
    return got == expect


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--examples", type=click.Path(exists=True, file_okay=False), default=str(EXAMPLES),
              show_default=True, help="Where vnet97.sxp and vnet98.sxp are.")
def cli(examples: str) -> None:
    """Build three simulated hosts, create vnets 97 and 98 on each, and show them working."""
    if os.geteuid() != 0:
        raise click.ClickException("the demo must run as root (it creates network namespaces)")
    cleanup_stale("vdemo*")
    Lab.install_signal_handlers()
    state_root = Path(tempfile.mkdtemp(prefix="vnet-demo-"))
    ok = True
    try:
        with Lab(prefix=f"vdemo{os.getpid()}") as lab:
            say("underlay: one switch, three hosts on 10.0.0.0/24, each running vnetd")
            sw = lab.switch("underlay")
            hosts = []
            for i in (1, 2, 3):
                h = VnetHost(lab, lab.host(f"host{i}", sw, f"10.0.0.{i}/24"), state_root / f"host{i}")
                h.start()
                hosts.append(h)
                click.echo(f"  host{i}: 10.0.0.{i}, vnetd pid {h.proc.pid}, state {h.state_dir}")

            say("create vnets 97 and 98 from doc/examples on every host")
            for h in hosts:
                for f in ("vnet97.sxp", "vnet98.sxp"):
                    shell(h, "vnet-create", str(Path(examples) / f))

            say("attach VMs: all in 10.97.0.0/24, but on two different vnets")
            vm97 = [lab.vm(f"vm97-{i}", h.host, "vnet97", f"10.97.0.{i}/24") for i, h in enumerate(hosts, 1)]
            vm98 = [lab.vm(f"vm98-{i}", hosts[i - 1].host, "vnet98", f"10.97.0.{100 + i}/24") for i in (1, 3)]
            for vm in vm97 + vm98:
                click.echo(f"  {vm.name}: {vm.ip} mac {vm.mac} on {vm.host.name} bridge {vm.bridge}")

            say("within vnet 97, across hosts: pings succeed")
            for src, dst in [(vm97[0], vm97[1]), (vm97[1], vm97[2]), (vm97[2], vm97[0])]:
                ok &= ping(lab, src, dst, expect=True)
            say("within vnet 98, host1 to host3: pings succeed")
            ok &= ping(lab, vm98[0], vm98[1], expect=True)
            say("from vnet 98 to vnet 97 (same IP subnet, even the same host): pings fail")
            for src, dst in [(vm98[0], vm97[0]), (vm98[0], vm97[1]), (vm98[1], vm97[2])]:
                ok &= ping(lab, src, dst, expect=False)

            say("what host1 knows")
            shell(hosts[0], "vnets", "-a")
            say("host1's vnets in brief, with counters: 'fast' when the kernel carried unicast "
                "frames through vnetd's tc/eBPF fast path, 'slow' when every frame went through "
                "vnetd (doc/fastpath.md)")
            shell(hosts[0], "-br", "-s", "vnets")
            say("host1's VARP table (where remote MACs live)")
            shell(hosts[0], "varp")
            say("removing everything")
    except KeyboardInterrupt:
        click.echo("\ninterrupted: everything was removed", err=True)
        sys.exit(130)
    finally:
        shutil.rmtree(state_root, ignore_errors=True)
    if not ok:
        raise click.ClickException("some checks failed (see FAIL above)")
    click.secho("\ndemo finished: vnets isolate and connect as expected; nothing left behind", bold=True)


def main() -> None:
    cli(prog_name="vnet-demo")


if __name__ == "__main__":
    main()
