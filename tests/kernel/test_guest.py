"""Host side of the kernel-module tests: judge the guest run.

The host kernel cannot load modules (see lab/guest.py), so everything under
``tests/kernel/in_guest/`` runs inside one QEMU guest with Debian's stock kernel,
booted once per session because each boot costs seconds of emulation; conftest.py
builds the module and starts that run in the background, overlapping the host
tests.  Here its results become two verdicts: did the guest's pytest pass, and did
the guest kernel stay clean (a module can pass every functional test while leaving
WARNINGs or leaks behind in the kernel log).

Skipped without root.  With root, missing tools fail rather than skip: CI
installs them through setup.sh, and a skip there would hide a broken CI.
"""
from __future__ import annotations

import os

import pytest

from lab import guest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (boots a QEMU guest sharing /)")
pytestmark = [pytest.mark.root, needs_root]


def test_guest_pytest_passed(guest_run) -> None:
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


def test_guest_kernel_log_clean(guest_run) -> None:
    problems = guest.kernel_problems(guest_run.result.kernel_log)
    assert guest_run.result.kernel_log, "the guest produced no kernel log at all"
    if problems:
        pytest.fail("guest kernel log reports problems:\n" + "\n".join(problems), pytrace=False)
