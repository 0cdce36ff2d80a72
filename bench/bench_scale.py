"""Scale: N simulated hosts on one switch, 8 vnets, two VMs per host, with the vnets
on the shared multicast group and then each on a group of its own.

As root, from the repository root:

    python -m bench.bench_scale [--hosts 8] [--hosts 32] [--hosts 128] [--json FILE]
    python -m bench.bench_scale --guest          # the module's 8-host run, in the QEMU guest

Host i (vnetd, or the module in the guest) has vnets i mod V and i+1 mod V (V = 8 by
default), one VM on each; all VMs share one IP subnet, so only the vnet boundary keeps
them apart.  The bridges and VMs are made first; then, for each group choice in turn
(`shared`: the default group of every vnet; `own`: `(group 239.1.0.X)` per vnet, made
by deleting and re-creating every vnet, the VMs staying on their bridges):

  create     `vn vnet-create` on every host (parallel), until the last one returns;
  reach      from the start of `create` until every sampled pair of VMs on one vnet
             answers a ping (all pairs up to --pairs, else a seeded sample of that many;
             the pings run from before `create`, ARP retried every 0.1 s; with own
             groups the VMs still hold the ARP entries of the shared round);
  isolation  sampled pairs on different vnets: none may answer (count of answered);
  idle       datapath packets each host received and sent per second over --idle s
             with nothing sent (VARP announces, re-announces, anything else);
  foreign    frames that reach each host's datapath per broadcast sent on a vnet the
             host does not have (K broadcasts on every vnet: the `unknown-vnet` drops
             over the broadcasts sent on the vnets it lacks);
  move       8 VMs moved (pairs of VMs on one vnet swap hosts, one swap after the
             other as fast as the lab re-cables, about 1 s each here): from the end of
             each swap until its VMs answer each other and a third VM of the vnet, if
             any (the worst swap; the re-cabling time is reported beside it);
  rss, cpu   vnetd's resident memory (median, max) and CPU seconds over the whole run
             (median, max), per host; the module runs in the kernel (n/a).

Ratios follow the benchmarks' rule (bench/README.md): `own/shared` of each figure is
measured in the same run, in the same lab.  Progress goes to stderr, the tables to
stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import guest_run
from bench.bench_throughput import progress
from lab import guest
from lab.lab import Lab
from lab.links import Interface
from lab.traffic import send_frames
from lab.vnethost import VnetHost

ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = "bench_scale.json"
MODES = ("shared", "own")
#: The datapath counters that are packets received from, and sent to, the underlay.
RX = ("udp-received", "etherip-received")
TX = ("floods", "announces-sent", "unicasts")
#: VM settings: no IPv6 chatter in the idle window (also on the eth0 a move makes
#: anew), and ARP retried every 0.1 s, not 1 s, so a ping waiting for the vnet
#: notices it within 0.1 s (set again on a moved VM's new eth0).
QUIET_VM = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1",
            "net.ipv4.neigh.eth0.retrans_time_ms": "100"}
#: Parallel vn calls and pings: more only queue on two cores.
WORKERS = 16


def vnet_id(v: int) -> str:
    return f"{0x10 + v:x}"


def vm_ip(i: int, slot: int) -> str:
    return f"10.200.{i}.{slot + 1}"


class Scale:
    """One lab of `n` hosts, `v` vnets, two VMs per host."""

    def __init__(self, lab: Lab, n: int, v: int, datapath: str, state: Path, rng: random.Random) -> None:
        self.lab, self.n, self.v, self.datapath, self.rng = lab, n, v, datapath, rng
        sw = lab.switch("sw")
        self.hosts: list[VnetHost] = []
        for i in range(n):
            h = lab.host(f"h{i}", sw, f"10.0.{i // 200}.{i % 200 + 1}/16")
            self.hosts.append(VnetHost(lab, h, state / f"h{i}", datapath=datapath))
        progress(f"{n} hosts: starting {datapath}")
        self.parallel(lambda h: h.start(timeout=600), self.hosts)
        #: vnets[i] = the two vnets of host i; vms[i][slot] = its VM on vnets[i][slot].
        self.vnets = [((i % v), ((i + 1) % v)) for i in range(n)]
        self.vms = []
        progress(f"{n} hosts: bridges and {2 * n} VMs")
        for i, h in enumerate(self.hosts):
            pair = []
            for slot, x in enumerate(self.vnets[i]):
                bridge = f"vnet{vnet_id(x)}"
                Interface.add_bridge(h.host.ns, bridge)
                vm = lab.vm(f"m{i}x{slot}", h.host, bridge, f"{vm_ip(i, slot)}/16")
                lab.sysctl(vm, QUIET_VM)
                pair.append(vm)
            self.vms.append(pair)
        self.members = {x: [(i, s) for i in range(n) for s in (0, 1) if self.vnets[i][s] == x]
                        for x in range(v)}

    def parallel(self, func, items) -> list:
        with ThreadPoolExecutor(WORKERS) as pool:
            return list(pool.map(func, items))

    # ---- phases ------------------------------------------------------------------------

    def create(self, mode: str) -> float:
        def make(i: int) -> None:
            for x in dict.fromkeys(self.vnets[i]):
                extra = ("--group", f"239.1.0.{x + 1}") if mode == "own" else ()
                self.hosts[i].vn("vnet-create", *extra, vnet_id(x))
        t0 = time.monotonic()
        self.parallel(make, range(self.n))
        return t0

    def delete(self) -> None:
        def drop(i: int) -> None:
            for x in dict.fromkeys(self.vnets[i]):
                self.hosts[i].vn("vnet-delete", "--force", vnet_id(x))
        self.parallel(drop, range(self.n))

    def same_vnet_pairs(self, limit: int) -> list[tuple]:
        pairs = [(self.vms[a][sa], self.vms[b][sb]) for x, ms in self.members.items()
                 for a, sa in ms for b, sb in ms if a != b]
        return pairs if len(pairs) <= limit else self.rng.sample(pairs, limit)

    def cross_vnet_pairs(self, count: int) -> list[tuple]:
        out = []
        while len(out) < count:
            a, b = self.rng.randrange(self.n), self.rng.randrange(self.n)
            sa, sb = self.rng.randrange(2), self.rng.randrange(2)
            if self.vnets[a][sa] != self.vnets[b][sb]:
                out.append((self.vms[a][sa], self.vms[b][sb]))
        return out

    def start_pings(self, pairs: list[tuple], timeout: float) -> list:
        """One ping loop per pair, all at once, each with a thread that notes when it
        ended (at its first answer)."""
        started = []
        for src, dst in pairs:
            # ping ends at an answer or at an error (no ARP answer in 0.3 s): again
            # until the answer.
            loop = f"until ping -n -q -c 1 -W 1 {dst.ip}; do sleep 0.02; done"
            proc = self.lab.popen(src, ["timeout", f"{timeout:g}", "sh", "-c", loop],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ended = [0.0]

            def wait(p=proc, e=ended) -> None:
                p.wait()
                e[0] = time.monotonic()
            t = threading.Thread(target=wait)
            t.start()
            started.append((proc, ended, t))
        return started

    def wait_pings(self, pairs: list[tuple], started: list, timeout: float) -> list[float]:
        """When each ping got its answer (monotonic); raises if one got none."""
        for _, _, t in started:
            t.join()
        failed = [pairs[k] for k, (p, _, _) in enumerate(started) if p.returncode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(pairs)} pairs did not answer within "
                               f"{timeout:g} s, e.g. {failed[0][0].name} -> {failed[0][1].name}")
        return [e[0] for _, e, _ in started]

    def ping_until(self, pairs: list[tuple], timeout: float) -> list[float]:
        return self.wait_pings(pairs, self.start_pings(pairs, timeout), timeout)

    def isolated(self, pairs: list[tuple]) -> int:
        """How many cross-vnet pairs answered (must be 0): two pings each, in parallel."""
        def answered(pair) -> bool:
            return self.lab.ping(pair[0], pair[1].ip, count=2, interval=0.2, timeout=3).received > 0
        return sum(self.parallel(answered, pairs))

    def counters(self) -> list[dict[str, int]]:
        return self.parallel(lambda h: h.counters(), self.hosts)

    def vnet_rx(self) -> list[int]:
        return self.parallel(lambda h: sum(v["rx_packets"] for v in h.vn_json("vnets")), self.hosts)

    def idle(self, seconds: float) -> dict:
        time.sleep(2)  # the last isolation probes' ARP retries end
        before = self.counters()
        t0 = time.monotonic()
        time.sleep(seconds)  # the window measured: nothing is sent on purpose
        after = self.counters()
        dt = time.monotonic() - t0
        rx = [sum(a.get(k, 0) - b.get(k, 0) for k in RX) / dt for a, b in zip(after, before)]
        tx = [sum(a.get(k, 0) - b.get(k, 0) for k in TX) / dt for a, b in zip(after, before)]
        return {"rx_per_s": statistics.mean(rx), "tx_per_s": statistics.mean(tx), "seconds": dt}

    def foreign(self, k: int) -> dict:
        """K broadcasts from one VM of every vnet; per host, the frames of vnets it
        lacks that reached its datapath, over the broadcasts sent on those vnets."""
        senders = {x: ms[0] for x, ms in self.members.items()}
        before, rx0 = self.counters(), self.vnet_rx()
        for x, (i, s) in senders.items():
            vm = self.vms[i][s]
            src = bytes.fromhex(vm.mac.replace(":", ""))
            send_frames(self.lab, vm, "eth0",
                        [b"\xff" * 6 + src + b"\x88\xb5" + j.to_bytes(2, "big") + bytes(44) for j in range(k)])
        # Wait until every member host got each of its vnets' broadcasts (from the same
        # senders, on the same switch: a non-member got its copies, if any, by then).
        want = [k * sum(1 for x in set(self.vnets[i]) if senders[x][0] != i) for i in range(self.n)]
        deadline = time.monotonic() + 120
        while True:
            rx = self.vnet_rx()
            if all(r - r0 >= w for r, r0, w in zip(rx, rx0, want)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("broadcasts did not reach the member hosts within 120 s")
            time.sleep(0.2)
        after = self.counters()
        ratios, per_bcast = [], []
        for i in range(self.n):
            lacking = self.v - len(set(self.vnets[i]))
            got = after[i].get("drop:unknown-vnet", 0) - before[i].get("drop:unknown-vnet", 0)
            ratios.append(got / (k * lacking) if lacking else 0.0)
            per_bcast.append(sum(after[i].get(c, 0) - before[i].get(c, 0) for c in RX) / (k * self.v))
        return {"per_foreign_broadcast": statistics.mean(ratios),
                "datapath_packets_per_broadcast": statistics.mean(per_bcast)}

    def move(self, moves: int, timeout: float) -> dict:
        """moves/2 vnets: the VM of host x (slot 0) and that of host x-1 (slot 1), both
        on vnet x, swap hosts, one swap after the other as fast as the lab re-cables.
        Each swap's probes start as soon as it is done: a moved VM pings its partner
        and is pinged by a third VM of the vnet, if any; its convergence is from the
        end of its swap to the last answer."""
        swaps = list(range(min(moves // 2, self.v)))
        t0 = time.monotonic()
        started = []
        for x in swaps:
            j = (x - 1) % self.n
            a, b = self.vms[x][0], self.vms[j][1]
            ha, hb = a.host, b.host
            self.lab.move_vm(a, hb, a.bridge)
            self.lab.move_vm(b, ha, b.bridge)
            for vm in (a, b):
                self.lab.sysctl(vm, QUIET_VM)
            self.vms[x][0], self.vms[j][1] = b, a  # vms[i] stays "the VMs on host i"
            probes = [(a, b), (b, a)]
            others = [self.vms[i][s] for i, s in self.members[x] if self.vms[i][s] not in (a, b)]
            if others:
                probes += [(others[0], a), (others[0], b)]
            started.append((time.monotonic(), probes, self.start_pings(probes, timeout)))
        recable = time.monotonic() - t0
        converge = [max(self.wait_pings(probes, procs, timeout)) - t for t, probes, procs in started]
        return {"moved": 2 * len(swaps), "recable_s": recable, "converge_s": max(converge),
                "converge_median_s": statistics.median(converge)}

    def usage(self) -> dict:
        if self.datapath != "vnetd":
            return {}
        rss, cpu = [], []
        tick = os.sysconf("SC_CLK_TCK")
        for h in self.hosts:
            pid = h.proc.pid
            with open(f"/proc/{pid}/status") as f:
                rss += [int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:")]
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu.append((int(fields[11]) + int(fields[12])) / tick)
        return {"rss_mb_median": statistics.median(rss), "rss_mb_max": max(rss),
                "cpu_s_median": statistics.median(cpu), "cpu_s_max": max(cpu)}


def run_size(n: int, args: argparse.Namespace, datapath: str, state_root: Path) -> dict:
    rng = random.Random(n)
    out: dict = {"hosts": n, "vnets": args.vnets, "datapath": datapath}
    t_start = time.monotonic()
    with Lab(prefix=f"vbs{os.getpid()}") as lab:
        s = Scale(lab, n, args.vnets, datapath, state_root / f"n{n}", rng)
        out["setup_s"] = time.monotonic() - t_start
        reach_pairs = s.same_vnet_pairs(args.pairs)
        cross = s.cross_vnet_pairs(min(args.pairs, 32))
        for mode in MODES:
            progress(f"{n} hosts, {mode} group: vnet-create on every host")
            if mode == "own":
                s.delete()
            # The pings wait for the vnets before they exist: starting them costs no time
            # of the measurement.
            pings = s.start_pings(reach_pairs, args.timeout + 600)
            t0 = s.create(mode)
            t1 = time.monotonic()
            done = s.wait_pings(reach_pairs, pings, args.timeout)
            r = {"create_s": t1 - t0, "reach_s": max(done) - t0,
                 "reach_median_s": statistics.median(done) - t0, "pairs": len(reach_pairs)}
            progress(f"{n} hosts, {mode}: created in {r['create_s']:.2f} s, {len(reach_pairs)} pairs "
                     f"reached in {r['reach_s']:.2f} s")
            r["isolation_answered"] = s.isolated(cross)
            r["isolation_pairs"] = len(cross)
            r["idle"] = s.idle(args.idle)
            r["foreign"] = s.foreign(args.broadcasts)
            r["move"] = s.move(args.moves, args.timeout)
            progress(f"{n} hosts, {mode}: {json.dumps(r)}")
            out[mode] = r
        out["usage"] = s.usage()
    out["total_s"] = time.monotonic() - t_start
    return out


def format_table(r: dict) -> str:
    sh, own = r["shared"], r["own"]

    def row(label: str, a: float, b: float, fmt: str = ".2f", ratio: bool = True) -> str:
        q = f"{b / a:.2f}" if ratio and a else "-"
        return f"{label:<44} {a:>10{fmt}} {b:>10{fmt}} {q:>12}"
    lines = [f"{r['hosts']} hosts, {r['vnets']} vnets, 2 VMs per host ({r['datapath']}; lab set up in "
             f"{r['setup_s']:.0f} s)",
             f"{'':<44} {'shared':>10} {'own':>10} {'own/shared':>12}",
             row("vnet-create on every host, s", sh["create_s"], own["create_s"]),
             row(f"create to reachability of {sh['pairs']} pairs, last, s", sh["reach_s"], own["reach_s"]),
             row(f"create to reachability of {sh['pairs']} pairs, median, s", sh["reach_median_s"],
                 own["reach_median_s"]),
             row(f"isolation: pairs answered of {sh['isolation_pairs']}", sh["isolation_answered"],
                 own["isolation_answered"], "d", False),
             row("idle: packets received per host per s", sh["idle"]["rx_per_s"], own["idle"]["rx_per_s"],
                 ".3f", False),
             row("idle: packets sent per host per s", sh["idle"]["tx_per_s"], own["idle"]["tx_per_s"],
                 ".3f", False),
             row("frames received per foreign broadcast", sh["foreign"]["per_foreign_broadcast"],
                 own["foreign"]["per_foreign_broadcast"], ".3f"),
             row("datapath packets per host per broadcast", sh["foreign"]["datapath_packets_per_broadcast"],
                 own["foreign"]["datapath_packets_per_broadcast"], ".3f"),
             row(f"{sh['move']['moved']} VMs moved: converged, worst swap, s", sh["move"]["converge_s"],
                 own["move"]["converge_s"]),
             row(f"{sh['move']['moved']} VMs moved: re-cabling them all, s", sh["move"]["recable_s"],
                 own["move"]["recable_s"], ".2f", False)]
    u = r.get("usage") or {}
    if u:
        lines.append(f"vnetd per host: RSS median {u['rss_mb_median']:.1f} MB (max {u['rss_mb_max']:.1f}), "
                     f"CPU over the run median {u['cpu_s_median']:.2f} s (max {u['cpu_s_max']:.2f})")
    else:
        lines.append("datapath in the kernel: no per-host process (RSS, CPU n/a)")
    return "\n".join(lines)


def in_guest(args: argparse.Namespace) -> int:
    if os.environ.get("VNET_IN_GUEST") != "1":
        print("bench_scale: --in-guest runs only inside the test guest", file=sys.stderr)
        return 2
    from vnet.datapath.kmod import client as kmod
    from vnet.datapath.kmod import loader
    Lab.install_signal_handlers()
    if not kmod.module_loaded():
        loader.insmod(Path(args.ko))
    state_root = Path(tempfile.mkdtemp(prefix="vnet-bench-scale-"))
    try:
        results = [run_size(n, args, "kmod", state_root) for n in args.hosts]
    finally:
        shutil.rmtree(state_root, ignore_errors=True)
    out = Path(os.environ.get("VNET_GUEST_RESULTS") or ".") / RESULTS_FILE
    out.write_text(json.dumps({"runs": results, "kernel": platform.release()}, indent=2) + "\n")
    return 0


def on_host(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench_scale: must run as root (network namespaces)", file=sys.stderr)
        return 2
    if args.guest:
        guest.check_tools()
        ko = guest.build_module(ROOT / "kmod")
        argv = [sys.executable, "-m", "bench.bench_scale", "--in-guest", "--ko", str(ko)]
        for n in args.hosts:
            argv += ["--hosts", str(n)]
        argv += ["--vnets", str(args.vnets), "--pairs", str(args.pairs), "--idle", str(args.idle),
                 "--broadcasts", str(args.broadcasts), "--moves", str(args.moves),
                 "--timeout", str(args.timeout)]
        res, got, problems = guest_run.run(argv, RESULTS_FILE, 3600, ROOT)
        if got is None:
            return 1
        results = got["runs"]
    else:
        Lab.install_signal_handlers()
        state_root = Path(tempfile.mkdtemp(prefix="vnet-bench-scale-"))
        try:
            results = [run_size(n, args, "vnetd", state_root) for n in args.hosts]
        finally:
            shutil.rmtree(state_root, ignore_errors=True)
        problems = []
    print("\n\n".join(format_table(r) for r in results))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results, "kernel_problems": problems}, indent=2) + "\n")
    return 1 if problems else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bench_scale",
                                description="Hosts, vnets and VMs at scale, on the shared multicast "
                                            "group and on a group per vnet.")
    p.add_argument("--hosts", type=int, action="append",
                   help="simulated hosts (repeatable: one table each; default: 8)")
    p.add_argument("--vnets", type=int, default=8, help="vnets (default: 8)")
    p.add_argument("--pairs", type=int, default=128,
                   help="same-vnet pairs pinged, all up to this many, else a sample (default: 128)")
    p.add_argument("--idle", type=float, default=10.0, help="idle window, s (default: 10)")
    p.add_argument("--broadcasts", type=int, default=10, help="broadcasts per vnet (default: 10)")
    p.add_argument("--moves", type=int, default=8, help="VMs moved at once (default: 8)")
    p.add_argument("--timeout", type=float, default=300.0, help="per-phase deadline, s (default: 300)")
    p.add_argument("--json", metavar="FILE", help="also write all numbers to FILE as JSON")
    p.add_argument("--guest", action="store_true",
                   help="run with the kernel module as every host's datapath, in the QEMU guest")
    p.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ko", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.hosts = args.hosts or [8]
    if args.vnets < 2 or min(args.hosts) < args.vnets:
        p.error("at least 2 vnets, and at least as many hosts as vnets")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return in_guest(args) if args.in_guest else on_host(args)


if __name__ == "__main__":
    sys.exit(main())
