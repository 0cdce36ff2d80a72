"""Run a benchmark's in-guest half and bring its results back, for the benchmarks of
the kernel module (which only loads in the QEMU guest, lab/guest.py)."""
from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.bench_throughput import progress
from lab import guest


def run(argv: Sequence[str], results_file: str, timeout: float, cwd: Path,
        extra_env: Mapping[str, str] | None = None) -> tuple[guest.GuestResult, dict | None, list[str]]:
    """Boot the guest (-smp 2), run `argv` there and read the JSON it wrote to
    `$VNET_GUEST_RESULTS/results_file`.  The guest's output is echoed to stderr and
    kernel-log problems are reported as they are found.  Returns (the guest run, the
    results or None, the kernel log's problems)."""
    with tempfile.TemporaryDirectory(prefix="vnet-bench-") as tmp:
        res = guest.run_in_guest(argv, timeout=timeout, extra_env=extra_env, results_dir=tmp, smp=2, cwd=cwd)
        out = Path(tmp) / results_file
        results = json.loads(out.read_text()) if out.exists() else None
    sys.stderr.write(res.output if res.output.endswith("\n") or not res.output else res.output + "\n")
    problems = guest.kernel_problems(res.kernel_log)
    if problems:
        progress("guest kernel log reports problems:\n" + "\n".join(problems))
    if results is None:
        progress("no results came back from the guest; kernel log tail:\n" + guest._tail(res.kernel_log))
    return res, results, problems
