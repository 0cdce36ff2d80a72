"""Run the fuzz targets: `python -m tests.fuzz.run --runs 1000000` (README, "Tests").

Each target (tests/fuzz/fuzz_<name>.py) runs as its own libFuzzer process under
atheris, seeded from tests/fuzz/seeds.py, for --runs inputs; an input that takes
longer than --timeout seconds is a hang.  A crash or a hang fails the run: its input
is kept in the artifacts directory (replay it with `python -m tests.fuzz.fuzz_<name>
FILE`) and the end of the target's output is printed.  The table gives, per target,
the inputs run, the coverage libFuzzer reports (cov: code edges, ft: features) and
the time taken.  tests/fuzz/test_fuzz_short.py runs the same with a few thousand
inputs in CI.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz import seeds

ROOT = Path(__file__).resolve().parents[2]
TARGETS = tuple(seeds.SEEDS)
#: The longest input libFuzzer makes per target: above the largest seed (a 3 KB
#: super-frame for receive), well below a datagram's 64 KB to keep inputs quick.
MAX_LEN = {"receive": 8192}
DEFAULT_MAX_LEN = 4096
STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", re.M)
DONE = re.compile(r"^Done (\d+) runs in (\d+) second", re.M)


@dataclass
class Result:
    target: str
    returncode: int
    runs: int
    cov: int
    ft: int
    seconds: float
    log: Path
    artifacts: list[Path]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.artifacts

    def row(self) -> str:
        rate = self.runs / self.seconds if self.seconds else 0
        verdict = "ok" if self.ok else f"FAILED (exit {self.returncode})"
        return (f"{self.target:<8} {self.runs:>9} {self.cov:>6} {self.ft:>6} {self.seconds:>9.1f} "
                f"{rate:>8.0f}  {verdict}")


HEADER = f"{'target':<8} {'inputs':>9} {'cov':>6} {'ft':>6} {'seconds':>9} {'inputs/s':>8}  result"


def fuzz(target: str, runs: int, work: Path, timeout: int = 10, seed: int | None = None) -> Result:
    """Run one target for `runs` inputs in `work` (its seeds, its growing corpus, its
    log and any crash go there); never raises for a crash, it is in the Result."""
    seed_dir, corpus, artifacts = work / "seeds", work / "corpus", work / "artifacts"
    for d in (corpus, artifacts):
        d.mkdir(parents=True, exist_ok=True)
    seeds.write(target, seed_dir)
    log = work / "fuzz.log"
    cmd = [sys.executable, "-m", f"tests.fuzz.fuzz_{target}", f"-runs={runs}", f"-timeout={timeout}",
           f"-max_len={MAX_LEN.get(target, DEFAULT_MAX_LEN)}", f"-artifact_prefix={artifacts}/",
           "-print_final_stats=1", str(corpus), str(seed_dir)]
    if seed is not None:
        cmd.append(f"-seed={seed}")
    start = time.monotonic()
    with open(log, "w") as out:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode
    seconds = time.monotonic() - start
    text = log.read_text(errors="replace")
    status = STATUS.findall(text)
    done = DONE.search(text)
    n, cov, ft = (int(x) for x in status[-1]) if status else (0, 0, 0)
    return Result(target, rc, int(done.group(1)) if done else n, cov, ft, seconds, log,
                  sorted(artifacts.iterdir()))


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1_000_000, help="inputs per target (default 10^6)")
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}")
    ap.add_argument("--jobs", type=int, default=1, help="targets run at once (default 1)")
    ap.add_argument("--timeout", type=int, default=10, help="seconds one input may take (default 10)")
    ap.add_argument("--dir", type=Path, help="keep corpora, logs and crashes here (default: a temporary "
                    "directory, removed when no target failed)")
    args = ap.parse_args(argv)
    targets = args.targets.split(",")
    unknown = set(targets) - set(TARGETS)
    if unknown:
        ap.error(f"unknown target(s) {', '.join(sorted(unknown))}; the targets are {', '.join(TARGETS)}")
    base = args.dir or Path(tempfile.mkdtemp(prefix="vnet-fuzz-"))
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda t: fuzz(t, args.runs, base / t, args.timeout), targets))
    print(HEADER)
    for r in results:
        print(r.row())
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"\n--- {r.target}: {', '.join(map(str, r.artifacts)) or 'no input kept'}\n{tail(r.log)}")
    if failed or args.dir:
        print(f"\ncorpora, logs and crashes: {base}")
    else:
        import shutil
        shutil.rmtree(base)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
