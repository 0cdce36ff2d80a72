"""Host side of the kernel-module tests: judge the guest run.

The host kernel cannot load modules (see lab/guest.py), so everything under
``tests/kernel/in_guest/`` runs inside QEMU guests with Debian's stock kernel,
two booted once per session (each boot costs seconds of emulation, and each guest
keeps about one core busy), sharing the tests; conftest.py builds the module and
starts them in the background, overlapping the host tests.  Here their results
become two verdicts: did the guests' pytest pass, and did the guest kernels stay clean (a module can pass every functional test while leaving
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
    bad = [(i, res) for i, res in enumerate(guest_run.results) if res.returncode != 0]
    if not bad:
        return
    lines = [f"pytest in guest {i} exited with status {res.returncode}" + (" (timed out)" if res.timed_out else "")
             for i, res in bad]
    if guest_run.failed:
        lines += ["failing guest tests:"] + [f"  {f}" for f in guest_run.failed]
    lines += [f"no junit.xml came back from guest {i}" for i in guest_run.junit_missing]
    for i, res in bad:
        lines += [f"--- tail of guest {i}'s output ---", guest._tail(res.output, 80)]
    pytest.fail("\n".join(lines), pytrace=False)


def test_guest_kernel_log_clean(guest_run) -> None:
    for i, res in enumerate(guest_run.results):
        assert res.kernel_log, f"guest {i} produced no kernel log at all"
        problems = guest.kernel_problems(res.kernel_log)
        if problems:
            pytest.fail(f"guest {i}'s kernel log reports problems:\n" + "\n".join(problems), pytrace=False)
