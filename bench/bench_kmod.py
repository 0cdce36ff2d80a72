"""VM-to-VM TCP throughput and 64-byte UDP packet rate: the vnet kernel module vs VXLAN.

The host kernel cannot load modules, so this runs in a QEMU guest booted with
Debian's stock kernel (lab/guest.py).  On the host, as root, from the
repository root:

    python -m bench.bench_kmod [--seconds 5] [--repeat 3] [--json out.json]

builds kmod/vnet.ko, boots one guest and runs this same module in it, from the
same directory, with --in-guest.  In the guest, labs (network namespaces, lab/) stay up for
the whole run, each with two hosts on a switch (10.0.0.1, 10.0.0.2) and a VM on
each host:

  vxlan  the kernel's VXLAN (VNI 97, UDP 4789, multicast group on eth0) enslaved to
         a bridge in each host, as in bench_throughput.py; VM MTU 1450.
  kmod   the vnet module (loaded once): `vn vnet-create 97` with VNET_DATAPATH=kmod
         in each host, VMs on the vnet97 bridge; VM MTU 1500 (the vnif's).
  kmod-port
         the module without a bridge: each VM's host-side interface is a port of the
         vnet (`vn vnet-create 97 --bridge none`, `vn port-add 97 pvm1`; doc/ports.md),
         its frames taken by the module's rx handler instead of crossing a bridge.
  kmod-auth, kmod-conf
         the same as kmod with `vn vnet-create -s auth|conf -k KEY 97` (doc/security.md):
         every frame sealed with ChaCha20-Poly1305, a TCP super-frame sealed whole.

Each repeat measures every scenario in turn (so drift hits all alike): one iperf3
TCP run, then one iperf3 UDP run of 64-byte payloads sent as fast as iperf3 can
(-u -l 64 -b 0), counting the packets the receiving iperf3 got.  The guest writes
every number to $VNET_GUEST_RESULTS; the host prints medians and the ratios
kmod/vxlan, port/bridge and secure/none, the figures that matter: absolute rates under
emulation mean little.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import guest_run
from bench.bench_throughput import (
    VNI,
    VXLAN_VM_MTU,
    build_vnet,
    build_vxlan,
    measure_iperf,
    progress,
    run_iperf,
)
from lab import guest
from lab.lab import VM, Lab
from lab.vnethost import VnetHost
from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import loader
from vnet.model.config import header_size

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = ("vxlan", "kmod", "kmod-port", "kmod-auth", "kmod-conf")
MODULE_SCENARIOS = ("kmod", "kmod-port", "kmod-auth", "kmod-conf")
BUILDERS = {"vxlan": build_vxlan, "kmod": functools.partial(build_vnet, datapath="kmod"),
            "kmod-port": functools.partial(build_vnet, datapath="kmod", ports=True),
            "kmod-auth": functools.partial(build_vnet, datapath="kmod", security="auth"),
            "kmod-conf": functools.partial(build_vnet, datapath="kmod", security="conf")}
#: UDP payload bytes of the packet-rate test (iperf3 -l).
UDP_PAYLOAD = 64
#: module/VXLAN, for TCP throughput and for the UDP packet rate.
TARGET_KMOD_VS_VXLAN = 0.90
#: port/bridge, for TCP throughput and the UDP packet rate: a port must not be slower.
TARGET_PORT_VS_BRIDGE = 1.0
#: conf/none for TCP throughput: what sealing every super-frame may cost at most.
TARGET_CONF_VS_NONE = 0.50
#: What the guest leaves in $VNET_GUEST_RESULTS.
RESULTS_FILE = "bench_kmod.json"
#: `vn` commands whose output is kept when the module scenario fails.
DIAGNOSTICS = (("vnets",), ("vifs",), ("varp",), ("peers",), ("stats",))
#: The largest VM MTU whose full-size frames vnet's UDP encapsulation carries unfragmented
#: on a 1500-byte underlay.  TCP is not concerned: the module sizes TCP segments to fit
#: the underlay whatever the VM MTU; other frames above it leave as two IP fragments.
KMOD_UNFRAGMENTED_MTU = 1500 - header_size("udp")
#: Medians computed per scenario (keys of one run's record).
MEDIAN_KEYS = ("throughput_bps", "udp_rx_pps", "udp_sent_pps", "udp_nic_rx_pps", "udp_loss_pct")


# ---------------------------------------------------------------------------
# In the guest: measurements


def measure_udp(lab: Lab, server: VM, client: VM, server_ip: str, seconds: float) -> dict[str, float]:
    """One iperf3 UDP run of UDP_PAYLOAD-byte datagrams at full speed, client -> server.

    udp_rx_pps: datagrams the receiving iperf3 got per second (its own count, sent
    back to the client: sequence numbers seen minus those missing); udp_sent_pps: what
    the sender managed; udp_nic_rx_pps: the receiving VM interface's rx_packets
    delta over the run, i.e. what the network delivered, socket-buffer drops included.
    """
    before = server.eth0.stats["rx_packets"]
    end = run_iperf(lab, server, client, server_ip, seconds,
                    ("-u", "-l", str(UDP_PAYLOAD), "-b", "0"))["end"]
    after = server.eth0.stats["rx_packets"]
    sent, recv = end["sum_sent"], end["sum_received"]
    got = recv["packets"] - recv["lost_packets"]
    return {
        "udp_rx_pps": got / recv["seconds"],
        "udp_sent_pps": sent["packets"] / sent["seconds"],
        "udp_nic_rx_pps": (after - before) / sent["seconds"],
        "udp_loss_pct": float(recv["lost_percent"]),
    }


def _diagnose(lab: Lab, state_dir: Path) -> dict[str, str]:
    """What `vn` says on each module host, for a report of a failed module scenario."""
    out: dict[str, str] = {}
    for name in ("host1", "host2"):
        host = lab.nodes.get(name)
        if host is None:
            continue
        vh = VnetHost(lab, host, state_dir / name, datapath="kmod")  # type: ignore[arg-type]
        for args in DIAGNOSTICS:
            try:
                r = vh.vn(*args, check=False)
                text = r.stdout + (f"[stderr, status {r.returncode}]\n{r.stderr}" if r.stderr else "")
            except Exception as exc:  # noqa: BLE001 - a diagnostic must not hide the failure itself
                text = f"[failed: {exc}]"
            out[f"{name}: vn {' '.join(args)}"] = text
    return out


def _fail(results: dict, name: str, exc: BaseException, lab: Lab | None, state_dir: Path) -> None:
    progress(f"{name}: FAILED: {exc}")
    results[name]["error"] = str(exc)
    if name in MODULE_SCENARIOS and lab is not None:
        results[name]["diagnostics"] = diag = _diagnose(lab, state_dir)
        for what, text in diag.items():
            progress(f"{name}: {what}:\n{text.rstrip()}")


def measure_all(seconds: float, repeat: int, kmod_vm_mtu: int | None = None,
                only: tuple[str, ...] = SCENARIOS) -> dict:
    """Build the labs of the scenarios in `only`, then measure them alternately; every
    run's figures."""
    ko = os.environ.get("VNET_KO")
    t0 = time.monotonic()
    if not kmod.module_loaded():
        path = loader.insmod(Path(ko) if ko else None)
        progress(f"loaded {path}")
    scenarios = [name for name in SCENARIOS if name in only]
    results: dict[str, dict] = {name: {"runs": []} for name in scenarios}
    state_root = Path(tempfile.mkdtemp(prefix="vnet-bench-kmod-"))
    with contextlib.ExitStack() as stack:
        labs: dict[str, tuple] = {}
        for name in scenarios:
            lab = stack.enter_context(Lab(prefix=f"vk{name.replace('-', '')}"))
            progress(f"{name}: building lab")
            try:
                src, dst, dst_ip = BUILDERS[name](lab, state_root / name)
                if name in MODULE_SCENARIOS and kmod_vm_mtu:
                    for vm in (src, dst):
                        vm.eth0.set_mtu(kmod_vm_mtu)
                waited = lab.wait_ping(src, dst_ip, timeout=30)
            except Exception as exc:  # noqa: BLE001 - report it, measure the other scenario
                _fail(results, name, exc, lab, state_root / name)
                continue
            results[name]["vm_mtu"] = src.eth0.mtu
            results[name]["reachable_after_s"] = waited
            progress(f"{name}: {dst_ip} reachable after {waited:.2f}s, VM MTU {results[name]['vm_mtu']}")
            labs[name] = (lab, src, dst, dst_ip)
        results["setup_seconds"] = time.monotonic() - t0
        for i in range(1, repeat + 1):
            for name in scenarios:
                if name not in labs or "error" in results[name]:
                    continue
                lab, src, dst, dst_ip = labs[name]
                try:
                    r = measure_iperf(lab, dst, src, dst_ip, seconds)
                    r.update(measure_udp(lab, dst, src, dst_ip, seconds))
                except Exception as exc:  # noqa: BLE001 - report it, measure the other scenario
                    _fail(results, name, exc, lab, state_root / name)
                    continue
                progress(f"{name}: run {i}/{repeat}: TCP {r['throughput_bps'] / 1e9:.3f} Gbit/s "
                         f"({r['retransmits']} retransmits); UDP {UDP_PAYLOAD} B: "
                         f"{r['udp_rx_pps']:.0f} pkt/s received of {r['udp_sent_pps']:.0f} sent "
                         f"({r['udp_nic_rx_pps']:.0f} at the VM's NIC)")
                results[name]["runs"].append(r)
        for name in MODULE_SCENARIOS:  # the module's own view: its counters and drops
            if name not in labs:
                continue
            lab = labs[name][0]
            counters = results[name]["host_counters"] = {}
            for h in ("host1", "host2"):
                try:
                    vh = VnetHost(lab, lab.nodes[h], state_root / name / h, datapath="kmod")  # type: ignore[arg-type]
                    counters[h] = vh.counters()
                except Exception as exc:  # noqa: BLE001 - the measurements are what matters
                    counters[h] = {"error": str(exc)}
    shutil.rmtree(state_root, ignore_errors=True)
    for name in scenarios:
        runs = results[name]["runs"]
        if runs:
            results[name]["median"] = {k: statistics.median(r[k] for r in runs) for k in MEDIAN_KEYS}
    results["measure_seconds"] = time.monotonic() - t0
    return results


def in_guest(args: argparse.Namespace) -> int:
    if os.environ.get("VNET_IN_GUEST") != "1":
        print("bench_kmod: --in-guest runs only inside the test guest (VNET_IN_GUEST unset); "
              "run without --in-guest to boot one", file=sys.stderr)
        return 2
    Lab.install_signal_handlers()
    results = measure_all(args.seconds, args.repeat, args.kmod_vm_mtu, tuple(args.only or SCENARIOS))
    results["guest"] = {"kernel": platform.release(), "cpus": os.cpu_count(),
                        "python": platform.python_version()}
    out = Path(os.environ.get("VNET_GUEST_RESULTS") or ".") / RESULTS_FILE
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any("error" in results.get(n, {}) for n in SCENARIOS) else 0


# ---------------------------------------------------------------------------
# On the host: boot the guest, report


def ratios(results: dict, num_name: str = "kmod", den_name: str = "vxlan") -> dict[str, float | None]:
    """num/den of the medians (kmod/vxlan by default): TCP throughput, UDP packets
    received, UDP at the NIC."""
    out: dict[str, float | None] = {}
    for key in ("throughput_bps", "udp_rx_pps", "udp_nic_rx_pps"):
        try:
            num, den = results[num_name]["median"][key], results[den_name]["median"][key]
        except KeyError:
            out[key] = None
            continue
        out[key] = num / den if den else None
    return out


def secure_ratios(results: dict) -> dict[str, dict[str, float | None]]:
    """auth/none and conf/none, the module's cost of sealing."""
    return {level: ratios(results, f"kmod-{level}", "kmod") for level in ("auth", "conf")}


def format_table(results: dict) -> str:
    header = (f"{'scenario':<10} {'vm_mtu':>6} {'tcp_Gbit/s':>11} {'udp64_rx_pkt/s':>15} "
              f"{'udp64_sent_pkt/s':>17} {'udp64_nic_rx_pkt/s':>19} {'udp64_loss%':>12}")
    lines = [header]
    for name in SCENARIOS:
        if name not in results:
            continue  # not asked for (--only)
        res = results[name]
        if "median" not in res:
            error = res.get("error", "no result").splitlines() or ["?"]
            lines.append(f"{name:<10} FAILED: {error[0][:90]}")
            continue
        m = res["median"]
        lines.append(f"{name:<10} {res.get('vm_mtu', '?'):>6} {m['throughput_bps'] / 1e9:>11.3f} "
                     f"{m['udp_rx_pps']:>15.0f} {m['udp_sent_pps']:>17.0f} "
                     f"{m['udp_nic_rx_pps']:>19.0f} {m['udp_loss_pct']:>12.1f}")
    r = ratios(results)
    for key, label in (("throughput_bps", "TCP throughput"), ("udp_rx_pps", "UDP 64 B packets received/s")):
        if r[key] is not None:
            verdict = "ok" if r[key] >= TARGET_KMOD_VS_VXLAN else "BELOW TARGET"
            lines.append(f"ratio kmod/vxlan {label + ':':<29} {r[key]:.2f}   "
                         f"(target >= {TARGET_KMOD_VS_VXLAN:.2f}: {verdict})")
    if r["udp_nic_rx_pps"] is not None:
        lines.append(f"ratio kmod/vxlan {'UDP 64 B at the VM NIC/s:':<29} {r['udp_nic_rx_pps']:.2f}")
    pr = ratios(results, "kmod-port", "kmod")
    for key, label in (("throughput_bps", "TCP throughput"), ("udp_rx_pps", "UDP 64 B packets received/s")):
        if pr[key] is not None:
            verdict = "ok" if pr[key] >= TARGET_PORT_VS_BRIDGE else "BELOW TARGET"
            lines.append(f"ratio port/bridge {label + ':':<28} {pr[key]:.2f}   "
                         f"(target >= {TARGET_PORT_VS_BRIDGE:.2f}: {verdict})")
    for level, sr in secure_ratios(results).items():
        for key, label in (("throughput_bps", "TCP throughput"), ("udp_rx_pps", "UDP 64 B packets received/s")):
            if sr[key] is None:
                continue
            note = ""
            if level == "conf" and key == "throughput_bps":
                verdict = "ok" if sr[key] >= TARGET_CONF_VS_NONE else "BELOW TARGET"
                note = f"   (target >= {TARGET_CONF_VS_NONE:.2f}: {verdict})"
            lines.append(f"ratio {level}/none {label + ':':<33} {sr[key]:.2f}{note}")
    mtu = results.get("kmod", {}).get("vm_mtu")
    if isinstance(mtu, int):
        lines.append(f"(medians of {len(results['kmod']['runs'])} runs; VM MTU: vxlan {VXLAN_VM_MTU}, "
                     f"the VXLAN device's; kmod {mtu}: the module fits TCP segments to the 1500-byte "
                     f"underlay, other frames above {KMOD_UNFRAGMENTED_MTU} bytes are fragmented)")
    return "\n".join(lines)


def on_host(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench_kmod: must run as root (it boots a QEMU guest sharing /)", file=sys.stderr)
        return 2
    try:
        guest.check_tools()
        progress("building kmod/vnet.ko")
        ko = guest.build_module(ROOT / "kmod")
    except guest.GuestError as exc:
        print(f"bench_kmod: {exc}", file=sys.stderr)
        return 2
    # Per run and scenario: two iperf3 runs plus their start-up, slow under emulation.
    chosen = args.only or SCENARIOS
    timeout = 300 + args.repeat * len(chosen) * (2 * args.seconds + 60)
    # The guest chroots into this machine's / and runs this module from the same
    # directory, so `-m` finds bench/, lab/ and vnet/ there as it did here.
    argv = [sys.executable, "-m", "bench.bench_kmod", "--in-guest",
            "--seconds", f"{args.seconds:g}", "--repeat", str(args.repeat)]
    if args.kmod_vm_mtu:
        argv += ["--kmod-vm-mtu", str(args.kmod_vm_mtu)]
    for name in args.only or ():
        argv += ["--only", name]
    progress(f"booting the guest ({' '.join(guest._accel())}, -smp 2); "
             f"about {args.repeat * len(chosen) * 2 * args.seconds:g} s of iperf3 plus set-up")
    res, results, problems = guest_run.run(argv, RESULTS_FILE, timeout, ROOT, {"VNET_KO": str(ko)})
    progress(f"guest: {res.seconds:.0f} s in QEMU (command started {res.boot_seconds} s after boot), "
             f"exit status {res.returncode}")
    if results is None:
        return 1
    failed = [n for n in chosen if "median" not in results.get(n, {})]
    if failed:
        vnet_lines = [ln for ln in res.kernel_log.splitlines() if "vnet" in ln]
        progress("guest kernel log, vnet lines:\n" + "\n".join(vnet_lines[-40:]))
    print(format_table(results))
    if args.json:
        doc = {
            "settings": {"seconds": args.seconds, "repeat": args.repeat, "udp_payload": UDP_PAYLOAD,
                         "vxlan_vm_mtu": VXLAN_VM_MTU, "kmod_vm_mtu": results.get("kmod", {}).get("vm_mtu"),
                         "vni": VNI, "accel": guest._accel(), "smp": 2},
            "host": {"kernel": platform.release(), "cpus": os.cpu_count()},
            "guest_seconds": res.seconds,
            "results": results,
            "ratios_kmod_vs_vxlan": ratios(results),
            "ratios_port_vs_bridge": ratios(results, "kmod-port", "kmod"),
            "ratios_secure_vs_none": secure_ratios(results),
            "target_conf_vs_none": TARGET_CONF_VS_NONE,
            "target_kmod_vs_vxlan": TARGET_KMOD_VS_VXLAN,
            "kernel_problems": problems,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        progress(f"wrote {args.json}")
    return 1 if failed or problems or res.returncode != 0 else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.bench_kmod",
        description="VM-to-VM TCP throughput and 64-byte UDP packet rate across two simulated "
                    "hosts in a QEMU guest: the vnet kernel module (security none, auth, conf) vs "
                    "the kernel's VXLAN.")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="duration of each iperf3 run (default: 5)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per scenario, alternating; the table shows medians (default: 3)")
    p.add_argument("--json", metavar="FILE", help="also write all numbers to FILE as JSON")
    p.add_argument("--kmod-vm-mtu", type=int, metavar="MTU",
                   help="MTU of the module scenario's VMs (default: the vnif's, 1500; "
                        f"non-TCP frames above {KMOD_UNFRAGMENTED_MTU} are fragmented on the underlay)")
    p.add_argument("--only", action="append", choices=SCENARIOS, metavar="SCENARIO",
                   help=f"run only this scenario (repeatable; one of {', '.join(SCENARIOS)})")
    p.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seconds <= 0:
        p.error("--seconds must be positive")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.kmod_vm_mtu is not None and not 68 <= args.kmod_vm_mtu <= 1500:
        p.error("--kmod-vm-mtu must be between 68 and 1500 (the vnif's MTU)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return in_guest(args) if args.in_guest else on_host(args)


if __name__ == "__main__":
    sys.exit(main())
