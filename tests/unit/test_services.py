"""The boot-time pieces that need no namespaces: the systemd units parse, pass
`systemd-analyze verify` and run commands that exist, the readiness notification,
the sh wrapper's usage, and network-vnet's logic against a datapath double (restoring
only what is missing, taking down, status lines).  The units run under a real systemd
in tests/netns/test_systemd.py."""
from __future__ import annotations

import configparser
import importlib
import os
import re
import shutil
import socket
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
from vnet.errors import VnetError
from vnet.host import bringup, hook, notify
from vnet.model.config import VnetConfig
from vnet.model.state import State
from vnet.model.vnetid import VnetId

UNITS = ROOT / "systemd"
WRAPPER = ROOT / "scripts" / "network-vnet"


def console_scripts() -> dict[str, str]:
    """pyproject.toml's console scripts, name -> "module:function"."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


class _Repeated(dict):
    """A section of a unit while it is read: systemd takes a key several times (each
    SystemCallFilter= line adds to the filter), so the values of a repeated key are
    kept, one a line, instead of refused."""

    def __setitem__(self, key, value):
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, dict_type=_Repeated)
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
    state_dir = "/var/lib/" + u["Service"]["StateDirectory"]  # what systemd makes ${STATE_DIRECTORY}
    for key in ("ExecStart", "ExecStop"):
        if key in u["Service"]:
            check_command(u["Service"][key].replace("${STATE_DIRECTORY}", state_dir))


def test_unit_kinds() -> None:
    vnetd, net = unit("vnetd.service")["Service"], unit("network-vnet.service")["Service"]
    assert (vnetd["Type"], vnetd["Restart"], vnetd["ExecStart"]) == \
        ("notify", "on-failure", "vnetd --state-dir ${STATE_DIRECTORY}")
    assert (net["Type"], net["RemainAfterExit"]) == ("oneshot", "yes")
    assert (net["ExecStart"], net["ExecStop"]) == ("network-vnet start", "network-vnet stop")
    for service in (vnetd, net):  # the default state directory of vn and network-vnet
        assert (service["StateDirectory"], service["StateDirectoryMode"]) == ("vnet", "0755")


def test_unit_sandboxes() -> None:
    """Each unit's capabilities are the ones its comments justify; only network-vnet may
    load the module."""
    vnetd, net = unit("vnetd.service")["Service"], unit("network-vnet.service")["Service"]
    # CAP_BPF and CAP_PERFMON (and bpf(2)) for vnetd's fast path (doc/fastpath.md).
    assert vnetd["CapabilityBoundingSet"].split() == ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_PERFMON"]
    assert net["CapabilityBoundingSet"].split() == ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_PERFMON",
                                                    "CAP_SYS_MODULE"]
    assert vnetd["ProtectKernelModules"] == "yes" and "ProtectKernelModules" not in net
    assert vnetd["SystemCallFilter"].splitlines() == ["@system-service", "~@privileged @resources", "bpf"]
    assert net["SystemCallFilter"] == "@system-service @module bpf"
    for service in (vnetd, net):
        assert (service["DevicePolicy"], service["DeviceAllow"]) == ("closed", "/dev/net/tun rw")
        assert service["ReadWritePaths"] == "-/proc/sys/net/ipv6/conf /proc/sys/net/ipv4/conf"
        assert service["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_NETLINK"]


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def installed(exec_line: re.Match) -> str:
    """An Exec line (key=, program) with the program's installed path."""
    found = shutil.which(exec_line[2])
    assert found, f"{exec_line[2]} is not installed as a command: pip install -e ."
    return exec_line[1] + found


@pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                    reason="needs systemd-analyze (Debian package systemd, which setup.sh installs)")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own checks of both units, with no message about either.  The units'
    programs are given as the installed console scripts' paths: systemd-analyze looks
    for a bare name only in systemd's fixed search path (/usr/local/bin, /usr/bin, ...),
    where an installation for another Python (pyenv, a virtualenv) does not put them.
    That systemd finds them by name is test_systemd's business."""
    paths = [tmp_path / name for name in ("vnetd.service", "network-vnet.service")]
    for path in paths:
        path.write_text(re.sub(r"^(Exec\w+=)(\S+)", installed, (UNITS / path.name).read_text(), flags=re.MULTILINE))
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", *map(str, paths)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, check=False)
    ours = [line for line in (r.stdout + r.stderr).splitlines()
            if "vnetd" in line or "network-vnet" in line or str(tmp_path) in line]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


def test_notify_sends_one_datagram(tmp_path: Path, monkeypatch) -> None:
    """READY=1 and friends reach a socket named by a path or an abstract @name, as one
    datagram of KEY=VALUE lines; with no NOTIFY_SOCKET nothing is sent."""
    monkeypatch.delenv(notify.ENV, raising=False)
    assert notify.notify(READY=1) is False
    abstract = f"@vnet-test-notify-{os.getpid()}"
    for name, address in ((str(tmp_path / "notify"), str(tmp_path / "notify")),
                          (abstract, "\0" + abstract[1:])):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(address)
            monkeypatch.setenv(notify.ENV, name)
            assert notify.notify(READY=1, STATUS="2 vnets, 1 peers") is True
            listener.settimeout(10)
            assert listener.recv(4096) == b"READY=1\nSTATUS=2 vnets, 1 peers\n"


def test_notify_errors_say_where(tmp_path: Path, monkeypatch) -> None:
    """A manager that asked to be told but cannot be is an error naming the socket: it
    would otherwise wait for READY=1 until its start timeout."""
    for name, words in (("relative/path", "not a Unix socket path or @abstract name"),
                        (str(tmp_path / "absent"), f"cannot notify the service manager on {tmp_path}")):
        monkeypatch.setenv(notify.ENV, name)
        with pytest.raises(VnetError, match=re.escape(words)):
            notify.notify(READY=1)


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
        port_add = port_del = ports = endpoint_add = endpoint_del = endpoints = \
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
