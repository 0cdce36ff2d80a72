"""network-vnet start|stop|status on simulated hosts: a host that loses power and boots
again gets its vnets back from its state directory, and every command is idempotent.

The hook runs in the host's namespace the way VnetHost.vn runs `vn` (the click command
in a forked child); the vnetd it starts lives in that namespace, so the lab's cleanup
ends it, and the `no_vnetd_left` fixture checks that it did."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import needs_root

from lab.vnethost import VnetHost, run_in_namespace
from vnet.host.hook import PROG, network_vnet
from vnet.host.service import pid_alive

pytestmark = [needs_root, pytest.mark.root]

VNET = "0000:0000:0000:0000:0000:0000:0000:0097"
IN_SERVICE = f"vnet {VNET} (vnetif vnif97, bridge vnet97): in service"
PERSISTED = f"vnet {VNET} (vnetif vnif97, bridge vnet97): persisted, not in service"


def module_args(tmp_path: Path) -> list[str]:
    """This kernel cannot load modules, so `start` falls back to vnetd.  On one that can,
    a missing module file gives the same fallback, instead of loading vnet.ko into the
    kernel of the machine running the tests."""
    return ["--module", str(tmp_path / "absent" / "vnet.ko")] if Path("/proc/modules").exists() else []


def hook(h: VnetHost, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    argv = [command, "--state-dir", str(h.state_dir), *args]
    code, out, err = run_in_namespace(h.host.ns, network_vnet.main, argv, PROG, timeout=90)
    r = subprocess.CompletedProcess([PROG, *argv], code, out, err)
    if check and code != 0:
        raise AssertionError(f"{PROG} {' '.join(argv)} on {h.name} failed ({code}):\n{out}{err}")
    return r


def vnetd_pids(marker: str) -> list[int]:
    """Live vnetd processes whose command line mentions `marker` (a test's tmp_path)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "vnet.datapath.vnetd" in argv and any(marker in a for a in argv) and pid_alive(int(entry)):
            found.append(int(entry))
    return found


@pytest.fixture
def no_vnetd_left(lab, tmp_path: Path):
    """After the test, pass or fail: the lab is gone and no vnetd of this test runs."""
    yield
    lab.cleanup()
    left = vnetd_pids(str(tmp_path))
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"vnetd processes outlived the lab: {left}"


def pid_of(h: VnetHost) -> int:
    return int((h.state_dir / "vnetd.pid").read_text())


def test_a_rebooted_host_gets_its_vnets_back(lab, make_hosts, tmp_path: Path, no_vnetd_left) -> None:
    sw = lab.switch("sw")
    hosts = make_hosts(2, switch=sw, start=False, datapath="vnetd")
    for h in hosts:
        r = hook(h, "start", "-a", h.ip, *module_args(tmp_path))
        assert "starting vnetd" in r.stdout and f"started vnetd (pid {pid_of(h)})" in r.stdout, r.stdout
        h.vn("vnet-create", "97")
    h1, h2 = hosts
    st = hook(h1, "status")
    assert "network-vnet: running (vnetd)" in st.stdout and "datapath: vnetd" in st.stdout, st.stdout
    assert f"pid: {pid_of(h1)}" in st.stdout and IN_SERVICE in st.stdout
    a = lab.vm("a", h1.host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", h2.host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)

    # Power loss: vnetd gets no SIGTERM, the machine and its VM vanish, the disk stays.
    os.kill(pid_of(h1), signal.SIGKILL)
    lab.remove(a)
    lab.remove(h1.host)
    h1 = VnetHost(lab, lab.host(h1.name, sw, h1.host.address, mac=h1.host.mac), h1.state_dir, datapath="vnetd")
    st = hook(h1, "status", check=False)
    assert st.returncode == 3 and "network-vnet: stopped" in st.stdout and PERSISTED in st.stdout, st.stdout
    assert "stale" in st.stdout  # the dead vnetd's pidfile

    r = hook(h1, "start", *module_args(tmp_path))  # no -a: the kept underlay address
    assert "restored 1 of 1 vnets and 0 of 0 peers" in r.stdout, r.stdout
    st = hook(h1, "status")
    assert "datapath: vnetd" in st.stdout and IN_SERVICE in st.stdout and "underlay: 10.0.0.1" in st.stdout
    a = lab.vm("a", h1.host, "vnet97", "10.97.0.1/24", mac=a.mac)
    lab.wait_ping(a, b.ip, timeout=20)
    assert lab.ping(b, a.ip, count=3).ok


def test_start_stop_status_are_idempotent(lab, make_hosts, tmp_path: Path, no_vnetd_left) -> None:
    (h,) = make_hosts(1, start=False, datapath="vnetd")
    st = hook(h, "status", check=False)
    assert st.returncode == 3 and "network-vnet: stopped" in st.stdout and "datapath: none" in st.stdout
    r = hook(h, "stop")
    assert "network-vnet: not running" in r.stdout
    r = hook(h, "start", "--datapath", "kmod", "--module", str(tmp_path / "absent.ko"), check=False)
    assert r.returncode == 1 and r.stderr.startswith("network-vnet: ") and "no such module file" in r.stderr
    r = hook(h, "start", "-a", "10.9.9.9", *module_args(tmp_path), check=False)
    assert r.returncode == 1 and "vnetd exited with status 1" in r.stderr, r.stderr
    assert "10.9.9.9 is not an address of this host" in r.stderr  # quoted from vnetd's log
    assert not (h.state_dir / "vnetd.pid").exists() and not vnetd_pids(str(tmp_path))

    hook(h, "start", "-a", h.ip, *module_args(tmp_path))
    h.vn("vnet-create", "97")
    h.vn("peer-add", "10.0.0.9")
    pid, state = pid_of(h), (h.state_dir / "state.sxp").read_bytes()
    again = hook(h, "start", *module_args(tmp_path))
    assert f"network-vnet: already running: vnetd (pid {pid})" in again.stdout, again.stdout
    assert pid_of(h) == pid and vnetd_pids(str(tmp_path)) == [pid]
    assert (h.state_dir / "state.sxp").read_bytes() == state

    r = hook(h, "stop")
    assert f"stopped vnetd (pid {pid})" in r.stdout and not pid_alive(pid)
    assert not (h.state_dir / "vnetd.pid").exists() and "vnif97" not in lab.link_names(h.host)
    r = hook(h, "stop")
    assert r.returncode == 0 and "network-vnet: not running" in r.stdout
    st = hook(h, "status", check=False)
    assert st.returncode == 3 and "network-vnet: stopped" in st.stdout and "datapath: none" in st.stdout
    assert PERSISTED in st.stdout and "peer 10.0.0.9 (port 1798): persisted, not in service" in st.stdout
    assert (h.state_dir / "state.sxp").read_bytes() == state

    hook(h, "start", *module_args(tmp_path))
    st = hook(h, "status")
    assert IN_SERVICE in st.stdout and "peer 10.0.0.9 (port 1798): in service" in st.stdout
