"""Split the kernel-module tests between the host and the QEMU guest, and overlap them.

Tests under ``in_guest/`` need the stock Debian kernel (to load kmod/vnet.ko), so
on the host they are not collected at all: ``test_guest.py`` boots the guest
and runs them there, where lab/guest.py sets ``VNET_IN_GUEST=1``.  Inside the
guest the roles swap: ``test_guest.py`` must not try to boot a guest of its own.

The guest run is most of the suite's time, and under emulation one guest keeps
about one core busy (its tests wait on one Python process at a time).  So when
``test_guest.py`` is selected, the module is built and ``$VNET_GUEST_SHARDS``
guests (default 2, one per core of the project's machines) are booted in background
threads as soon as collection ends, each running every n-th guest test
(in_guest/conftest.py); the host tests run meanwhile, ``test_guest.py`` runs last
and its ``guest_run`` fixture waits for the results.  The guests are killed if the
session ends first (Ctrl-C, -x).
"""
from __future__ import annotations

import compileall
import os
import shlex
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab import guest

IN_GUEST = bool(os.environ.get("VNET_IN_GUEST"))
collect_ignore = ["test_guest.py"] if IN_GUEST else ["in_guest"]

ROOT = guest.REPO_ROOT
#: The module source; ``$VNET_KMOD_DIR`` points elsewhere (e.g. a scratch module
#: while working on this harness itself).
KMOD = Path(os.environ.get("VNET_KMOD_DIR") or ROOT / "kmod")
#: Time budget for each guest's pytest run, boot not included: a bound for a hung run,
#: not a speed target (about 10 min each on a quiet 2-core machine, more under load).
GUEST_TIMEOUT = float(os.environ.get("VNET_GUEST_TIMEOUT", "1500"))
#: What the guest's pytest runs: ``$VNET_GUEST_TESTS`` (pytest arguments, e.g.
#: ``tests/kernel/in_guest/test_kmod.py -k superframe``) narrows it while working on
#: one part of the module; CI runs them all.
GUEST_TESTS = shlex.split(os.environ.get("VNET_GUEST_TESTS", "")) or ["tests/kernel/in_guest"]
#: How many guests share the guest tests, booted at once; each boot costs seconds.
GUEST_SHARDS = max(1, int(os.environ.get("VNET_GUEST_SHARDS", "2")))
#: Guest tests listed with their durations after a run ($VNET_GUEST_SLOWEST, default 8).
SLOWEST = int(os.environ.get("VNET_GUEST_SLOWEST", "8"))
#: Where to keep each guest's pytest output and kernel log ($VNET_GUEST_OUTPUT, a dir:
#: guest-N.log and guest-N.dmesg), for the long and debug-kernel runs whose figures and
#: logs are wanted even when they pass.
OUTPUT = os.environ.get("VNET_GUEST_OUTPUT")


@dataclass
class GuestRun:
    """What one guest session produced, for test_guest.py to judge."""

    results: list[guest.GuestResult] = field(default_factory=list)  # one per guest
    problem: str = ""  # the module could not be built or the guest not started
    failed: list[str] = field(default_factory=list)  # "file::test (kind): message"
    durations: list[tuple[float, str]] = field(default_factory=list)  # slowest first
    junit_missing: list[int] = field(default_factory=list)  # guests that sent no junit.xml
    #: What guest tests recorded for the log (record_testsuite_property), e.g. which
    #: kernel the fast path was probed on: (name, value), listed in the summary.
    notes: list[tuple[str, str]] = field(default_factory=list)


def _read_junit(path: Path, run: GuestRun) -> None:
    root = ET.parse(path).getroot()
    for suite in root.iter("testsuite"):
        for prop in suite.findall("properties/property"):
            run.notes.append((prop.get("name", ""), prop.get("value", "")))
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        run.durations.append((float(case.get("time") or 0), name))
        for child in case:
            if child.tag in ("failure", "error"):
                msg = (child.get("message") or "").splitlines()
                run.failed.append(f"{name} ({child.tag}): {msg[0] if msg else ''}")
    run.durations.sort(reverse=True)


class BackgroundGuest:
    """Builds the module and runs tests/kernel/in_guest in the guest, on a thread."""

    def __init__(self) -> None:
        self.run = GuestRun()
        self.cancel = threading.Event()
        self.thread = threading.Thread(target=self._work, name="vnet-guest", daemon=True)
        self._results: list[guest.GuestResult | None] = [None] * GUEST_SHARDS
        self._lock = threading.Lock()

    def _work(self) -> None:
        try:
            guest.check_tools()
            ko = guest.build_module(KMOD)
            # Compiled once on the host, before the guest reads the share: the guest
            # then never compiles the project under emulation.
            for top in ("vnet", "sxp", "lab", "tests"):
                compileall.compile_dir(str(ROOT / top), quiet=2)
            with tempfile.TemporaryDirectory(prefix="vnet-guest-queue-") as queue:
                shards = [threading.Thread(target=self._shard, args=(i, ko, queue),
                                           name=f"vnet-guest-{i}")
                          for i in range(GUEST_SHARDS)]
                for t in shards:
                    t.start()
                for t in shards:
                    t.join()
            self.run.results = [r for r in self._results if r is not None]
            self.run.durations.sort(reverse=True)
            if len(self.run.results) < GUEST_SHARDS and not self.run.problem:
                self.run.problem = "a guest run ended without a result"
        except guest.GuestError as exc:
            self.run.problem = str(exc)
        except Exception as exc:  # reported by the fixture, not lost on the thread
            self.run.problem = f"the guest run failed: {exc!r}"

    def _shard(self, index: int, ko: Path, queue: str) -> None:
        """Guest `index`: its share of the tests, in a QEMU of its own.  The guests take
        the tests as they go from one queue (`queue`, shared by all of them; see
        tests/kernel/in_guest/conftest.py), so they finish together however long each
        test turns out to be."""
        try:
            with tempfile.TemporaryDirectory(prefix="vnet-guest-results-") as results:
                res = guest.run_in_guest(
                    [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                     *GUEST_TESTS, f"--junitxml={guest.GUEST_RESULTS}/junit.xml"],
                    timeout=GUEST_TIMEOUT,
                    extra_env={"VNET_KO": str(ko), "VNET_GUEST_SHARD": f"{index}/{GUEST_SHARDS}"},
                    results_dir=results, cancel=self.cancel, shared_dir=queue)
                if OUTPUT:
                    out = Path(OUTPUT)
                    out.mkdir(parents=True, exist_ok=True)
                    (out / f"guest-{index}.log").write_text(res.output)
                    (out / f"guest-{index}.dmesg").write_text(res.kernel_log)
                junit = Path(results) / "junit.xml"
                with self._lock:
                    self._results[index] = res
                    if junit.exists():
                        _read_junit(junit, self.run)
                    else:
                        self.run.junit_missing.append(index)
        except guest.GuestError as exc:
            with self._lock:
                self.run.problem = self.run.problem or str(exc)
        except Exception as exc:  # reported by the fixture, not lost on the thread
            with self._lock:
                self.run.problem = self.run.problem or f"guest {index} failed: {exc!r}"

    def wait(self) -> GuestRun:
        self.thread.join()
        return self.run


_background = pytest.StashKey[BackgroundGuest]()


def _guest_items(items: list[pytest.Item]) -> list[pytest.Item]:
    here = Path(__file__).resolve().parent / "test_guest.py"
    return [i for i in items if Path(i.path).resolve() == here]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once the tests to run are known (after -k, -m and deselection)."""
    config = session.config
    items = session.items
    if IN_GUEST:
        return
    chosen = _guest_items(items)
    if not chosen or os.geteuid() != 0 or config.option.collectonly:
        return
    items[:] = [i for i in items if i not in chosen] + chosen  # judged last
    bg = BackgroundGuest()
    config.stash[_background] = bg
    bg.thread.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    bg = config.stash.get(_background, None)
    if bg is not None and bg.thread.is_alive():
        bg.cancel.set()
        bg.thread.join(30)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    bg = config.stash.get(_background, None)
    if bg is None or bg.thread.is_alive() or not bg.run.results:
        return
    terminalreporter.write_sep("-", "kernel-module guest")
    for i, res in enumerate(bg.run.results):
        terminalreporter.write_line(f"guest {i}: {res.seconds:.0f} s in QEMU (boot to command "
                                    f"{res.boot_seconds} s), exit status {res.returncode}")
    terminalreporter.write_line(f"{len(bg.run.durations)} guest tests; the slowest:")
    for seconds, name in bg.run.durations[:SLOWEST]:
        terminalreporter.write_line(f"  {seconds:6.1f} s  {name}")
    for name, value in bg.run.notes:
        terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="module")
def guest_run(request: pytest.FixtureRequest) -> GuestRun:
    """The guest session's outcome: started at collection, awaited here."""
    bg = request.config.stash.get(_background, None)
    if bg is None:  # selected some other way (e.g. by keyword after collection)
        bg = BackgroundGuest()
        request.config.stash[_background] = bg
        bg.thread.start()
    run = bg.wait()
    if run.problem:
        pytest.fail(run.problem, pytrace=False)
    return run
