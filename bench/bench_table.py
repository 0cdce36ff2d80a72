"""The module's receive rate under a MAC flood, with the MAC table before and after
issue 12 (keyed hash, per-vnet bounds, route caches per care-of address).

The host kernel cannot load modules, so this runs in a QEMU guest (lab/guest.py), as
bench_kmod.py does.  On the host, as root, from the repository root:

    python -m bench.bench_table [--before REV] [--macs 4000] [--frames 10000]

builds two modules, kmod/ of REV (default: the commit before the keyed hash, see
BEFORE) and kmod/ of the working tree, boots one guest and runs this same module in it
with --in-guest, which loads each module in turn and, in a lab of one module host and
one plain sender host on a switch, measures:

  learn     `--macs` frames, each from a new MAC, into vnet 97: the cost of learning;
  random    `--frames` frames from those MACs again, chosen at random (refreshes);
  colliding the same two with MACs computed to share one bucket of the old unkeyed
            hash (lab/collide.py), in vnet 98 of a fresh lab.

The sender sends in chunks and waits for the module's `udp-received` counter after
each, so every frame is handled; the rate is frames over the time that took, which
under veth includes the receive path (it runs in the sender's softirq).  Absolute rates
under emulation mean little: compare colliding/random of one module, and after/before.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_throughput import progress
from bench import guest_run
from lab import guest
from lab.collide import Flooder, colliding_macs, frame
from lab.lab import Lab
from lab.vnethost import VnetHost
from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import loader
from vnet.model.vnetid import VnetId

ROOT = Path(__file__).resolve().parent.parent
#: The last commit with the old MAC table (unkeyed jhash, no per-vnet bounds, a route
#: cache per MAC), which already reports the tables' sizes and longest chains.
BEFORE = "bcfa7a0"
RESULTS_FILE = "bench_table.json"
MODULES = ("before", "after")
SCENARIOS = ("random", "colliding")


# ---------------------------------------------------------------------------
# In the guest


def one_lab(kind: str, macs: int, frames: int, state_dir: Path) -> dict:
    """One lab, one module host, one sender: learn `macs` MACs of `kind`, then refresh
    them `frames` times; the rates, the table's size and longest chain."""
    vid = VnetId.parse("97" if kind == "random" else "98")
    if kind == "colliding":
        learned = colliding_macs(vid.packed, macs)
    else:
        rng = random.Random(97)
        learned = list({bytes([0x02]) + rng.randbytes(5) for _ in range(macs)})
    pick = random.Random(1)
    refresh = [frame(vid.packed, pick.choice(learned)) for _ in range(frames)]
    with Lab(prefix="vbt") as lab:
        sw = lab.switch("sw")
        h = VnetHost(lab, lab.host("h1", sw, "10.0.0.1/24"), state_dir / kind, datapath="kmod")
        h.start()
        sender = lab.host("x", sw, "10.0.0.9/24")
        h.vn("vnet-create", str(vid))
        flood = Flooder(h, sender.ns)
        try:
            t0 = time.monotonic()
            flood.send([frame(vid.packed, m) for m in learned])
            t1 = time.monotonic()
            flood.send(refresh)
            t2 = time.monotonic()
            tables = flood.client.table_stats()
        finally:
            flood.close()
    return {"learn_fps": len(learned) / (t1 - t0), "refresh_fps": frames / (t2 - t1),
            "entries": tables["varp"]["entries"], "longest_chain": tables["varp"]["longest_chain"]}


def in_guest(args: argparse.Namespace) -> int:
    if os.environ.get("VNET_IN_GUEST") != "1":
        print("bench_table: --in-guest runs only inside the test guest", file=sys.stderr)
        return 2
    Lab.install_signal_handlers()
    results: dict = {"macs": args.macs, "frames": args.frames}
    state_root = Path(tempfile.mkdtemp(prefix="vnet-bench-table-"))
    try:
        for name, ko in (("before", args.ko_before), ("after", args.ko_after)):
            if kmod.module_loaded():
                loader.rmmod()
            loader.insmod(Path(ko))
            results[name] = {}
            for kind in SCENARIOS:
                progress(f"{name}: {kind}: {args.macs} MACs, then {args.frames} frames")
                r = one_lab(kind, args.macs, args.frames, state_root / name)
                progress(f"{name}: {kind}: learn {r['learn_fps']:.0f} frames/s, refresh "
                         f"{r['refresh_fps']:.0f} frames/s, {r['entries']} entries, longest chain "
                         f"{r['longest_chain']}")
                results[name][kind] = r
    finally:
        shutil.rmtree(state_root, ignore_errors=True)
    results["guest"] = {"kernel": platform.release(), "cpus": os.cpu_count()}
    out = Path(os.environ.get("VNET_GUEST_RESULTS") or ".") / RESULTS_FILE
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


# ---------------------------------------------------------------------------
# On the host


def format_table(results: dict) -> str:
    header = (f"{'module':<7} {'MACs':<10} {'entries':>7} {'longest_chain':>13} "
              f"{'learn_frames/s':>14} {'refresh_frames/s':>16}")
    lines = [header]
    for name in MODULES:
        for kind in SCENARIOS:
            r = results.get(name, {}).get(kind)
            if r is None:
                lines.append(f"{name:<7} {kind:<10} no result")
                continue
            lines.append(f"{name:<7} {kind:<10} {r['entries']:>7} {r['longest_chain']:>13} "
                         f"{r['learn_fps']:>14.0f} {r['refresh_fps']:>16.0f}")
    for key, label in (("learn_fps", "learn"), ("refresh_fps", "refresh")):
        for name in MODULES:
            try:
                ratio = results[name]["colliding"][key] / results[name]["random"][key]
            except (KeyError, ZeroDivisionError):
                continue
            lines.append(f"ratio colliding/random {label:<8} {name:<7} {ratio:.2f}")
        try:
            ratio = results["after"]["colliding"][key] / results["before"]["colliding"][key]
            lines.append(f"ratio after/before colliding {label:<8} {ratio:.2f}")
        except (KeyError, ZeroDivisionError):
            pass
    lines.append(f"({results.get('macs')} MACs learned, then {results.get('frames')} frames from "
                 "them; rates include the Python sender's own cost)")
    return "\n".join(lines)


def checkout_kmod(rev: str, into: Path) -> Path:
    """kmod/ as it was at `rev`, in `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "kmod", "VERSION"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "kmod"


def on_host(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench_table: must run as root (it boots a QEMU guest sharing /)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vnet-bench-table-") as tmp:
        try:
            guest.check_tools()
            progress(f"building the module of {args.before} and of the working tree")
            ko_before = guest.build_module(checkout_kmod(args.before, Path(tmp)))
            ko_after = guest.build_module(ROOT / "kmod")
        except (guest.GuestError, subprocess.CalledProcessError) as exc:
            print(f"bench_table: {exc}", file=sys.stderr)
            return 2
        argv = [sys.executable, "-m", "bench.bench_table", "--in-guest", "--macs", str(args.macs),
                "--frames", str(args.frames), "--ko-before", str(ko_before), "--ko-after", str(ko_after)]
        res, results, problems = guest_run.run(argv, RESULTS_FILE, 3600, ROOT)
    if results is None:
        return 1
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"before": args.before, "results": results,
                                               "kernel_problems": problems}, indent=2) + "\n")
    return 1 if problems or res.returncode != 0 else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bench_table",
                                description="The module's receive rate under a MAC flood, "
                                            "before and after the keyed MAC table.")
    p.add_argument("--before", default=BEFORE, help=f"git revision of the old module (default: {BEFORE})")
    p.add_argument("--macs", type=int, default=4000,
                   help="MACs learned per scenario (default: 4000, under the 4096 a vnet may hold)")
    p.add_argument("--frames", type=int, default=10000, help="frames sent from them (default: 10000)")
    p.add_argument("--json", metavar="FILE", help="also write all numbers to FILE as JSON")
    p.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ko-before", help=argparse.SUPPRESS)
    p.add_argument("--ko-after", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return in_guest(args) if args.in_guest else on_host(args)


if __name__ == "__main__":
    sys.exit(main())
