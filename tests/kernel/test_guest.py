"""Host side of the kernel-module tests: build vnet.ko, boot the guest once, judge it.

The host kernel cannot load modules (see guest.py), so everything under
``tests/kernel/in_guest/`` runs inside one QEMU guest with Debian's stock kernel,
booted once per session because each boot costs several seconds of emulation.
Here we only build the module, start that run, and turn its results into two
verdicts: did the guest's pytest pass, and did the guest kernel stay clean
(a module can pass every functional test while leaving WARNINGs or leaks
behind in the kernel log).

Skipped without root.  With root, missing tools fail rather than skip: CI
installs them through setup.sh, and a skip there would hide a broken CI.
"""
from __future__ import annotations

import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import guest  # tests/kernel/guest.py (the guest/ dir has no __init__.py, so the module wins)

ROOT = guest.REPO_ROOT
#: The module source; ``$VNET_KMOD_DIR`` points elsewhere (e.g. a scratch module
#: while working on this harness itself).
KMOD = Path(os.environ.get("VNET_KMOD_DIR") or ROOT / "kmod")
#: Time budget for the guest's pytest run, boot not included.
GUEST_TIMEOUT = float(os.environ.get("VNET_GUEST_TIMEOUT", "900"))

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (boots a QEMU guest sharing /)")
pytestmark = [pytest.mark.root, needs_root]


@dataclass
class GuestRun:
    result: guest.GuestResult
    failed: list[str]  # "file::test: message" for each failed or errored guest test
    junit_found: bool


def _junit_failures(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    failed = []
    for case in root.iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                name = f"{case.get('classname', '')}::{case.get('name', '')}"
                msg = (child.get("message") or "").splitlines()
                failed.append(f"{name} ({child.tag}): {msg[0] if msg else ''}")
    return failed


@pytest.fixture(scope="module")
def guest_run() -> GuestRun:
    try:
        guest.check_tools()
        ko = guest.build_module(KMOD)
        problem = ""
    except guest.GuestError as exc:
        problem = str(exc)
    if problem:  # outside the except block: no "during handling" chain in the report
        pytest.fail(problem, pytrace=False)
    with tempfile.TemporaryDirectory(prefix="vnet-guest-results-") as results:
        res = guest.run_in_guest(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
             "tests/kernel/in_guest", f"--junitxml={guest.GUEST_RESULTS}/junit.xml"],
            timeout=GUEST_TIMEOUT,
            extra_env={"VNET_KO": str(ko)},
            results_dir=results,
        )
        junit = Path(results) / "junit.xml"
        failed = _junit_failures(junit) if junit.exists() else []
        print(f"guest: {res.seconds:.1f} s in QEMU, boot to command {res.boot_seconds} s, "
              f"exit status {res.returncode}")
        return GuestRun(res, failed, junit.exists())


def test_guest_pytest_passed(guest_run: GuestRun) -> None:
    res = guest_run.result
    if res.returncode == 0:
        return
    lines = [f"pytest in the guest exited with status {res.returncode}"
             + (" (timed out)" if res.timed_out else "")]
    if guest_run.failed:
        lines += ["failing guest tests:"] + [f"  {f}" for f in guest_run.failed]
    elif not guest_run.junit_found:
        lines.append("no junit.xml came back from the guest")
    lines += ["--- tail of the guest output ---", guest._tail(res.output, 80)]
    pytest.fail("\n".join(lines), pytrace=False)


def test_guest_kernel_log_clean(guest_run: GuestRun) -> None:
    problems = guest.kernel_problems(guest_run.result.kernel_log)
    assert guest_run.result.kernel_log, "the guest produced no kernel log at all"
    if problems:
        pytest.fail("guest kernel log reports problems:\n" + "\n".join(problems), pytrace=False)
