"""The fuzz targets' short run in CI: a few thousand inputs each, seeded with the
documented vectors, as a subprocess under atheris (tests/fuzz/run.py).  A crash, a
broken invariant or a hang fails the test with the target's output and the input
that did it; the long run is `python -m tests.fuzz.run` (README, "Tests")."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.run import TARGETS, fuzz, tail

RUNS = 3000


@pytest.mark.parametrize("target", TARGETS)
def test_short_fuzz_run_finds_nothing(target: str, tmp_path: Path) -> None:
    r = fuzz(target, RUNS, tmp_path, seed=1)
    assert r.ok, f"fuzz target {target} failed on {r.artifacts}:\n{tail(r.log)}"
    assert r.runs == RUNS, tail(r.log)
    assert r.cov > 0, tail(r.log)
