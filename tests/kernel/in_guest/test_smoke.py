"""Smoke test of the guest test environment itself (runs only inside the guest).

If one of these fails, every kernel-module test after it would fail for a
reason that has nothing to do with the module: wrong kernel, no pyroute2 in the
chroot, namespaces or ping not working, or a module built for another kernel.
Kept small: CPU-bound Python runs about 20x slower under QEMU's TCG.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from lab.lab import Lab

ROOT = Path(__file__).resolve().parents[3]
ABI = os.environ.get("VNET_GUEST_ABI", "")


def test_runs_the_stock_debian_kernel() -> None:
    assert os.environ.get("VNET_IN_GUEST") == "1"
    assert ABI and platform.release() == ABI, (platform.release(), ABI)
    # The whole stock module tree is mounted, so modprobe works in the chroot.
    assert Path(f"/lib/modules/{ABI}/modules.dep").is_file()


def test_pyroute2_imports() -> None:
    import pyroute2

    assert pyroute2.IPRoute


def test_lab_two_hosts_ping() -> None:
    with Lab() as lab:
        sw = lab.switch("s")
        a = lab.host("a", sw, "10.77.1.1/24")
        b = lab.host("b", sw, "10.77.1.2/24")
        lab.wait_ping(a, b.ip, timeout=20)
        r = lab.ping(a, b.ip)
        assert r.ok and r.received == 3, r.output


def test_module_was_built_for_this_kernel() -> None:
    ko = Path(os.environ.get("VNET_KO") or ROOT / "kmod" / "vnet.ko")
    assert ko.is_file(), f"{ko} missing: the host side builds it before booting the guest"
    vermagic = subprocess.run(["modinfo", "-F", "vermagic", str(ko)], capture_output=True,
                              text=True, check=True).stdout.split()
    assert vermagic and vermagic[0] == platform.release(), vermagic
