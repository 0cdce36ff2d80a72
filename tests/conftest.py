"""Shared fixtures: simulated vnet hosts (network namespaces) on a real datapath.

The datapath is vnetd unless VNET_TEST_DATAPATH says "kmod": the scenario tests run
unchanged with the kernel module inside the test guest (tests/kernel/in_guest)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import guest, nicguest
from lab.lab import Lab
from lab.vnethost import VnetHost

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "doc" / "examples"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
#: Tests too long for CI's 15 minutes, run with VNET_LONG_TESTS=1 (README, "Tests").
long_run = pytest.mark.skipif(not os.environ.get("VNET_LONG_TESTS"),
                              reason="a long run: set VNET_LONG_TESTS=1")


@pytest.fixture(scope="module")
def nic_guest_tools() -> None:
    """The tiny QEMU guest with socket NICs (lab/nicguest.py) can run here: its tools
    and Debian's kernel are at hand, or the module's tests are skipped, saying why."""
    try:
        nicguest.check_tools()
        guest.fetch_kernel()
    except guest.GuestError as e:
        pytest.skip(str(e))


@pytest.fixture
def lab():
    with Lab() as lab:
        yield lab


@pytest.fixture
def make_hosts(lab: Lab, tmp_path: Path):
    """make_hosts(n) -> n VnetHosts with their datapath started, on one switch (10.0.0.0/24)."""

    def make(n: int, switch=None, subnet: str = "10.0.0", gateway: str | None = None,
             first: int = 1, start: bool = True, datapath: str | None = None) -> list[VnetHost]:
        kind = datapath or os.environ.get("VNET_TEST_DATAPATH", "vnetd")
        sw = switch or lab.switch("sw")
        out = []
        for i in range(first, first + n):
            name = f"h{subnet.split('.')[-1]}{i}"
            h = lab.host(name, sw, f"{subnet}.{i}/24", gateway=gateway)
            vh = VnetHost(lab, h, tmp_path / name, datapath=kind)
            if start:
                vh.start()
            out.append(vh)
        return out

    return make
