"""The boot-time pieces that need no namespaces: the systemd units parse and run
commands that exist, the sh wrapper's usage, and network-vnet's logic against a
datapath double (restoring only what is missing, taking down, status lines)."""
from __future__ import annotations

import configparser
import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT

from vnet.control.datapath import Datapath
from vnet.control.records import peer_record, vnet_record
from vnet.host import bringup, hook
from vnet.model.config import VnetConfig
from vnet.model.state import State
from vnet.model.vnetid import VnetId

UNITS = ROOT / "systemd"
WRAPPER = ROOT / "scripts" / "network-vnet"


def console_scripts() -> dict[str, str]:
    """pyproject.toml's console scripts, name -> "module:function"."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text(), source=name)
    return parser


def check_command(line: str) -> None:
    """An Exec line's program is one of our console scripts and takes its arguments."""
    prog, *args = line.split()
    target = console_scripts().get(prog)
    assert target, f"{prog} is not a console script in pyproject.toml"
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func))
    commands = [v for v in vars(importlib.import_module(module)).values() if isinstance(v, click.Command)]
    command = ([c for c in commands if isinstance(c, click.Group)] or commands)[0]  # a group's commands too
    if isinstance(command, click.Group):
        assert args and args[0] in command.commands, line
        command, args = command.commands[args[0]], args[1:]
    command.make_context(prog, list(args))  # raises on an unknown option


@pytest.mark.parametrize("name", ["vnetd.service", "network-vnet.service"])
def test_units_parse_and_run_existing_commands(name: str) -> None:
    u = unit(name)
    assert u.sections() == ["Unit", "Service", "Install"]
    assert u["Unit"]["Description"]
    assert "network-online.target" in u["Unit"]["After"].split()
    assert "network-online.target" in u["Unit"]["Wants"].split()
    assert {"libvirtd.service", "xendomains.service"} <= set(u["Unit"]["Before"].split())
    assert u["Install"]["WantedBy"] == "multi-user.target"
    for key in ("ExecStart", "ExecStop"):
        if key in u["Service"]:
            check_command(u["Service"][key])


def test_unit_kinds() -> None:
    vnetd, net = unit("vnetd.service")["Service"], unit("network-vnet.service")["Service"]
    assert (vnetd["Type"], vnetd["Restart"], vnetd["ExecStart"]) == \
        ("simple", "on-failure", "vnetd --state-dir /var/lib/vnet")
    assert (net["Type"], net["RemainAfterExit"]) == ("oneshot", "yes")
    assert (net["ExecStart"], net["ExecStop"]) == ("network-vnet start", "network-vnet stop")


def run_wrapper(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(WRAPPER), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": sys.executable})


def test_wrapper_usage_and_exec(tmp_path: Path) -> None:
    assert os.access(WRAPPER, os.X_OK)
    for args in ([], ["restart"], ["--help"]):
        r = run_wrapper(*args)
        assert r.returncode == 2 and "Usage: " in r.stderr and "(start|stop|status)" in r.stderr, args
    r = run_wrapper("status", "--state-dir", str(tmp_path), "--datapath", "vnetd")
    assert r.returncode == 3 and r.stdout.startswith("network-vnet: stopped\ndatapath: none\n"), r


def invoke(*args: str):
    return CliRunner().invoke(hook.network_vnet, list(args), prog_name="network-vnet")


def test_usage_errors() -> None:
    r = invoke()
    assert r.exit_code == 2 and "network-vnet: missing command (expected start, stop or status)" in r.output
    r = invoke("restart")
    assert r.exit_code == 2 and "unknown command: restart" in r.output
    r = invoke("start", "debug=1")
    assert r.exit_code == 1 and "network-vnet: unknown module parameter 'debug=1'" in r.output


def test_stopped_host_with_vnetd_chosen(tmp_path: Path) -> None:
    (tmp_path / "vnetd.pid").write_text("999999999\n")  # no such pid
    r = invoke("stop", "--state-dir", str(tmp_path), "--datapath", "vnetd")
    assert r.exit_code == 0 and "removed the stale pidfile" in r.output and "network-vnet: not running" in r.output
    assert not (tmp_path / "vnetd.pid").exists()


class Running(Datapath):
    """A datapath double that runs vnet 97 and peer 10.0.0.9 and records deletions."""

    kind = "test"

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def vnets(self) -> list:
        return [vnet_record(VnetId.parse("97"), "vnif97", "none", 64, bridge="vnet97")]

    def peers(self) -> list:
        return [peer_record("10.0.0.9", 1798, 0, 0)]

    def vnet_del(self, vid: VnetId) -> None:
        self.deleted.append(str(vid))

    def peer_del(self, addr: str) -> None:
        self.deleted.append(addr)

    vnet_add = vnet_keys = vif_add = vif_del = vifs = peer_add = varp_flush = varp = set_mcaddr = stats = \
        lambda self, *a: None  # type: ignore[assignment]


def persisted() -> State:
    state = State(settings={"mcaddr": "224.10.0.7"})
    for v in ("97", "98"):
        state.add_vnet(VnetConfig.from_cli(v))
    state.add_peer("10.0.0.9", 1798)
    state.add_peer("10.0.0.10", 1799)
    return state


def test_missing_is_what_the_datapath_lacks() -> None:
    todo = bringup.missing(Running(), persisted())
    assert list(todo.vnets) == [VnetId.parse("98")] and todo.peers == {"10.0.0.10": 1799}
    assert todo.settings == {"mcaddr": "224.10.0.7"}


def test_take_down_leaves_the_state_alone() -> None:
    dp = Running()
    assert bringup.take_down(dp) == (1, 1, [])
    assert dp.deleted == [str(VnetId.parse("97")), "10.0.0.9"]


def test_status_lines() -> None:
    dp = Running()
    state = persisted()
    state.remove_peer("10.0.0.9")
    assert hook._vnet_lines(state, dp.vnets()) == [
        f"vnet {VnetId.parse('97')} (vnetif vnif97, bridge vnet97): in service",
        f"vnet {VnetId.parse('98')} (vnetif vnif98, bridge vnet98): persisted, not in service"]
    assert hook._peer_lines(state, dp.peers()) == [
        "peer 10.0.0.9 (port 1798): in service, not persisted",
        "peer 10.0.0.10 (port 1799): persisted, not in service"]
