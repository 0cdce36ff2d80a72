"""The README's quick start, run as written on two simulated hosts.

The commands come from README.md itself: the fenced blocks of its "Quick start on real
hosts" section, each marked by the HTML comment on the line before it, which a reader
of the rendered page does not see.  A block marked `<!-- quickstart: every host -->`
runs line by line, as written, in each host's namespace with the host's own state
directory (VNET_STATE_DIR) and, first on PATH, the console scripts of pyproject.toml
written as pip writes them, running this tree's code.  A block marked
`<!-- quickstart: not run: WHY -->` (installing, systemd, a VM image, a key copied
between hosts) is reported as a skipped test saying why.

The VMs are network namespaces, each cabled to its host by a veth pair whose host end
is named as the README's tap and left down and on no bridge, as QEMU leaves the tap it
makes without a network script; the README's QEMU options themselves are checked by
starting QEMU with them.  The lab's hosts cannot load kernel modules, so
`network-vnet start` falls back to vnetd, as on any host without the module.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, needs_root
from netns.test_network_vnet import no_vnetd_left  # noqa: F401 (a fixture)
from netns.test_systemd import install

from lab.lab import Host, Lab
from lab.links import Interface
from vnet.datapath.kmod import loader
from vnet.errors import DatapathError

README = ROOT / "README.md"
SECTION = "## Quick start on real hosts"
MARKER = re.compile(r"<!-- quickstart: (.*?) -->")
EVERY_HOST = "every host"
NOT_RUN = "not run: "
#: The attach step: a VM's tap onto the vnet's bridge.
ATTACH = re.compile(r"ip link set dev (\S+) master (\S+)")
#: The attach step as the README gave it until issue 11, which leaves the tap down.
ATTACH_LEFT_DOWN = "ip link set dev {tap} master {bridge}"
QEMU = "qemu-system-x86_64"
#: Seconds a README command may take (network-vnet start waits up to 30 s for vnetd).
COMMAND_TIMEOUT = 120

pytestmark = [needs_root, pytest.mark.root]


@dataclass
class Block:
    """A fenced block of the quick start: its README line, its marker (None if the line
    before the fence is no quickstart comment), and its commands with their lines
    (continued lines joined; blank and comment lines left out)."""

    line: int
    marker: str | None
    commands: list[tuple[int, str]]

    @property
    def runs(self) -> bool:
        return self.marker == EVERY_HOST


def quickstart_blocks(text: str) -> list[Block]:
    """The fenced blocks of README.md's quick start section, in order."""
    lines = text.splitlines()
    try:
        start = lines.index(SECTION)
    except ValueError:
        raise AssertionError(f"README.md has no section {SECTION!r}") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    blocks: list[Block] = []
    i = start + 1
    while i < end:
        if not lines[i].startswith("```"):
            i += 1
            continue
        found = MARKER.fullmatch(lines[i - 1].strip())
        block = Block(i + 1, found.group(1) if found else None, [])
        pending: tuple[int, str] | None = None
        i += 1
        while not lines[i].startswith("```"):
            if i + 1 >= end:
                raise AssertionError(f"README.md line {block.line}: the block is not closed")
            text_line = lines[i].strip()
            if pending is None and (not text_line or text_line.startswith("#")):
                i += 1
                continue
            first, sofar = pending or (i + 1, "")
            if text_line.endswith("\\"):
                pending = (first, sofar + text_line[:-1])
            else:
                block.commands.append((first, sofar + text_line))
                pending = None
            i += 1
        blocks.append(block)
        i += 1
    return blocks


BLOCKS = quickstart_blocks(README.read_text())


def module_would_load() -> bool:
    """`network-vnet start` would load a vnet.ko into the kernel running the tests: this
    kernel loads modules and a module is built or installed (see test_network_vnet)."""
    if not Path("/proc/modules").exists():
        return False
    try:
        loader.default_module_path()
    except DatapathError:
        return False
    return True


on_hosts = pytest.mark.skipif(module_would_load(), reason="network-vnet start would load vnet.ko "
                              "into the kernel running the tests")


def test_every_block_of_the_quick_start_says_whether_it_runs() -> None:
    for block in BLOCKS:
        assert block.runs or (block.marker or "").startswith(NOT_RUN), (
            f"README.md line {block.line}: the block has no '<!-- quickstart: {EVERY_HOST} -->' "
            f"or '<!-- quickstart: {NOT_RUN}WHY -->' on the line before it")
    assert sum(b.runs for b in BLOCKS) >= 3, "the quick start runs almost nothing"


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.runs], ids=lambda b: f"README.md:{b.line}")
def test_blocks_not_run(block: Block) -> None:
    commands = "; ".join(c for _, c in block.commands)
    pytest.skip(f"README.md line {block.line} not run ({(block.marker or '')[len(NOT_RUN):]}): {commands}")


def attach_step() -> tuple[int, str, str, str]:
    """The README line, command, tap and bridge of the quick start's attach step."""
    found = [(line, cmd, m.group(1), m.group(2)) for b in BLOCKS if b.runs for line, cmd in b.commands
             if (m := ATTACH.match(cmd))]
    assert len(found) == 1, \
        f"the quick start attaches one tap, with 'ip link set dev TAP master BRIDGE': {found}"
    return found[0]


def qemu_command() -> tuple[int, list[str]]:
    """The README line and words of the quick start's QEMU command."""
    found = [(line, shlex.split(cmd)) for b in BLOCKS for line, cmd in b.commands if cmd.startswith(QEMU)]
    assert len(found) == 1, f"the quick start should start one VM with {QEMU}: {found}"
    return found[0]


@dataclass
class Admin:
    """Types the README's commands as root on one simulated host."""

    lab: Lab
    host: Host
    env: dict[str, str]
    cwd: Path

    @classmethod
    def of(cls, lab: Lab, host: Host, state_dir: Path, bindir: Path) -> Admin:
        """In a directory of its own, not in this source tree: the quick start works
        wherever the commands are installed."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VNET_")}
        env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', os.defpath)}", VNET_STATE_DIR=str(state_dir))
        cwd = state_dir.parent / f"{host.name}-home"
        cwd.mkdir()
        return cls(lab, host, env, cwd)

    def run(self, line: int, command: str) -> str:
        cp = self.lab.run(self.host, ["sh", "-c", command], env=self.env, cwd=self.cwd,
                          timeout=COMMAND_TIMEOUT)
        assert cp.returncode == 0, (f"README.md line {line} on {self.host.name}: '{command}' exited with "
                                    f"status {cp.returncode}:\n{cp.stdout}{cp.stderr}")
        return cp.stdout


def console_scripts(tmp_path: Path) -> Path:
    """The directory of vn, vnetd, network-vnet and xm, running this tree's code."""
    root = tmp_path / "install"
    install(root, sys.executable, [str(ROOT)])
    return root / "usr/local/bin"


def output_of(outputs: dict[str, str], command: str) -> str:
    assert command in outputs, f"the quick start no longer runs '{command}'"
    return outputs[command]


@on_hosts
@pytest.mark.usefixtures("no_vnetd_left")
def test_the_quick_start_works_as_written(lab: Lab, make_hosts, tmp_path: Path) -> None:
    attach_line, attach, tap, bridge = attach_step()
    bindir = console_scripts(tmp_path)
    hosts = make_hosts(2, start=False, datapath="vnetd")
    admins = [Admin.of(lab, h.host, h.state_dir, bindir) for h in hosts]
    vms = [lab.vm(f"vm{i}", h.host, bridge, f"10.97.0.{i}/24", port=tap, plugged=False)
           for i, h in enumerate(hosts, 1)]
    taps = [vm.link.intf2 for vm in vms]
    assert [t.name for t in taps] == [tap, tap] and not any(t.is_up for t in taps)
    vm1, vm2 = vms
    outputs: list[dict[str, str]] = [{}, {}]
    for block in (b for b in BLOCKS if b.runs):
        attaches = any(cmd == attach for _, cmd in block.commands)
        if attaches:
            # The step as the README gave it before: the tap joins the bridge, stays down,
            # and the VM behind it gets no answer.
            for admin in admins:
                admin.run(attach_line, ATTACH_LEFT_DOWN.format(tap=tap, bridge=bridge))
            assert all(t.master == bridge and not t.is_up for t in taps)
            assert lab.ping(vm1, vm2.ip, count=2).received == 0
        for admin, out in zip(admins, outputs):
            for line, cmd in block.commands:
                out[cmd] = admin.run(line, cmd)
        if attaches:
            assert all(t.master == bridge and t.is_up for t in taps), \
                f"README.md line {attach_line}: '{attach}' leaves {tap} down"
            lab.wait_ping(vm1, vm2.ip, timeout=30)
            assert lab.ping(vm2, vm1.ip, count=3).ok

    for h, out, far in zip(hosts, outputs, (vm2, vm1)):
        started = output_of(out, "network-vnet start")
        assert "starting vnetd" in started and "started vnetd" in started, started
        status = output_of(out, "network-vnet status")
        assert "running (vnetd)" in status and f"underlay: {h.ip} " in status, status
        assert far.mac in output_of(out, "vn varp"), f"{h.name} does not know where {far.name} is"


@on_hosts
@pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"needs {QEMU} (Debian: qemu-system-x86)")
@pytest.mark.usefixtures("no_vnetd_left")
def test_the_quick_starts_qemu_options_make_the_tap_it_attaches(lab: Lab, make_hosts,
                                                                tmp_path: Path) -> None:
    """QEMU takes the README's -netdev and -device options (with the host_mtu it
    advises for a raw EtherIP vnet), makes the tap, leaves it down and on no bridge,
    and the README's attach step puts it on the vnet and up."""
    attach_line, attach, tap, bridge = attach_step()
    qemu_line, words = qemu_command()
    net = [w for opt, value in zip(words, words[1:]) if opt in ("-netdev", "-device") for w in (opt, value)]
    assert any(f"ifname={tap}" in value.split(",") for value in net), \
        f"README.md line {qemu_line}: QEMU's tap is not {tap}, which the quick start attaches"
    text = README.read_text()
    mtu = re.search(r"`([\w-]*mtu[\w-]*=\d+)`", text[text.index(SECTION):])
    assert mtu, "the quick start no longer gives the -device option host_mtu"
    net[net.index("-device") + 1] += f",{mtu.group(1)}"
    (h,) = make_hosts(1, start=False, datapath="vnetd")
    admin = Admin.of(lab, h.host, h.state_dir, console_scripts(tmp_path))
    for block in (b for b in BLOCKS if b.runs):
        if any(cmd == attach for _, cmd in block.commands):
            break
        for line, cmd in block.commands:
            admin.run(line, cmd)
    # -daemonize: QEMU returns once it has set everything up (CPU stopped: -S), or failed.
    # The lab's cleanup ends it with the host.
    argv = [QEMU, "-S", "-nodefaults", "-display", "none", "-daemonize", *net]
    cp = lab.run(h.host, argv, timeout=COMMAND_TIMEOUT)
    assert cp.returncode == 0, f"{shlex.join(argv)} exited with status {cp.returncode}:\n{cp.stdout}{cp.stderr}"
    made = Interface(tap, h.host.ns)
    assert not made.is_up and made.master is None, \
        f"{QEMU} ran a network script on {tap} (state {'up' if made.is_up else 'down'}, bridge {made.master})"
    admin.run(attach_line, attach)
    assert made.is_up and made.master == bridge
