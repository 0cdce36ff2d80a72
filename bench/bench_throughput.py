"""VM-to-VM throughput and latency across two simulated hosts: veth vs VXLAN vs vnetd.

A benchmark, not a test: it prints numbers and fails only when a scenario cannot be
measured at all.  Every scenario is built in its own fresh lab (network namespaces, see
lab/), measured, and torn down before the next one starts, so they never
share state or compete for the CPU:

  veth   the bare underlay: two host namespaces on one switch; iperf3 and ping run
         directly between the hosts' underlay addresses.  The ceiling.
  vxlan  the kernel reference: in each host a VXLAN device (VNI 97, UDP 4789, multicast
         group 239.1.1.1 on eth0) enslaved to a Linux bridge; VM namespaces on that
         bridge talk to each other through the tunnel.
  vnetd  vnet's user-space datapath: vnetd on each host, `vn vnet-create 97`, VMs on
         the vnet97 bridge vnetd made.
  vnetd-auth, vnetd-conf  the same vnet with (security auth) or (security conf): every
         frame sealed with ChaCha20-Poly1305 (doc/security.md).
  vnetd-port  the vnet without a bridge: each VM's host-side interface is a port of
         it (`vn vnet-create 97 --bridge none`, `vn port-add 97 pvm1`; doc/ports.md).
  vnetd-port-capture  vnetd-port measured twice in one lab: as it is, then with an idle
         `vn capture 97` on each host (every point of the vnet, a filter matching
         nothing: `udp port 9`): the price of a capture that sees nothing, which
         should be none (the filter runs in the kernel; doc/capture.md).
  vnetd-endpoint  the sending VM behind a UDP socket endpoint of the vnet, as a VM with
         a QEMU `-netdev dgram` NIC is (doc/endpoints.md): lab/qemu_socket_peer.py plays
         its QEMU, joining the VM's veth to the endpoint's socket, so iperf3 runs in the
         VM's namespace.  The receiving VM is on the other host's vnet97 bridge.  The
         stand-in is Python, one frame per system call each way: it, not vnetd, may
         set the ceiling here (a QEMU would not).

Per repeat: 50 pings at 20 ms (avg/min/max RTT), one iperf3 TCP run, then one iperf3
UDP run of 64-byte frames (18-byte payloads) at full speed, which gives the packet
rate the receiver got; the table shows the median over --repeat runs.  Run as root from the repository root:

    python -m bench.bench_throughput [--seconds 5] [--repeat 1] [--json out.json]
                                     [--only veth --only vnetd ...]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from lab.lab import Host, Lab, cleanup_stale
from lab.links import Interface
from lab.netns import rtnl
from lab.vnethost import VnetHost

SCENARIOS = ("veth", "vxlan", "vnetd", "vnetd-port", "vnetd-port-capture", "vnetd-endpoint", "vnetd-auth",
             "vnetd-conf")
#: The filter of vnetd-port-capture's idle capture: nothing of the benchmark matches it.
IDLE_FILTER = "udp port 9"
#: The endpoint of vnetd-endpoint (ours) and the address its QEMU stand-in binds.
ENDPOINT_OURS, ENDPOINT_THEIRS = "127.0.0.1:10001", "127.0.0.1:20001"
#: Turns checksum offload off on eth0 (argv[1] the interface): a QEMU socket NIC has
#: no offloads, so the frames the stand-in reads must be complete, as a guest's are.
NO_OFFLOAD = r"""
import sys
from pyroute2.ethtool import Ethtool
with Ethtool() as eth:
    feats = eth.get_features(sys.argv[1])
    for name in ("tx-checksum-ip-generic", "tx-generic-segmentation", "tx-tcp-segmentation",
                 "tx-tcp6-segmentation", "generic-receive-offload"):
        if name in feats.features:
            feats.features[name].enable = False
    eth.set_features(sys.argv[1], feats)
"""
VNI = 97
VXLAN_PORT = 4789
VXLAN_GROUP = "239.1.1.1"
#: 1500 minus the VXLAN overhead (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
#: The kernel gives the vxlan device this MTU and a bridge drops frames bigger than
#: the egress port's MTU, so the VMs must use it too, as in any real VXLAN setup.
VXLAN_VM_MTU = 1450
IPERF_PORT = 5201
#: The UDP payload of a 64-byte frame with its FCS: 64 - 4 - 14 - 20 - 8.
SMALL_PAYLOAD = 18
PING_COUNT = 50
PING_INTERVAL = 0.02
TARGET_VNETD_VS_VXLAN = 0.10

_RTT = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


def progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A measurement could not be taken (no connectivity, iperf3 failed, ...)."""


# ---------------------------------------------------------------------------
# Measurements


def measure_ping(lab: Lab, src, dst_ip: str) -> dict[str, float]:
    """PING_COUNT pings at PING_INTERVAL; RTT figures in ms from ping's summary line."""
    res = lab.ping(src, dst_ip, count=PING_COUNT, interval=PING_INTERVAL,
                   timeout=PING_COUNT * PING_INTERVAL + 10)
    m = _RTT.search(res.output)
    if not m or res.received == 0:
        raise BenchError(f"ping {dst_ip} got no replies:\n{res.output}")
    return {
        "rtt_min_ms": float(m.group(1)),
        "rtt_avg_ms": float(m.group(2)),
        "rtt_max_ms": float(m.group(3)),
        "rtt_mdev_ms": float(m.group(4)),
        "ping_loss_pct": res.loss,
        "ping_duplicates": res.duplicates,
    }


def _listening(pid: int, port: int) -> bool:
    """True once some socket in ``pid``'s network namespace listens on TCP ``port``.

    /proc/PID/net/* shows the namespace of that process, so no setns is needed.
    """
    want = f":{port:04X}"
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) > 3 and cols[1].endswith(want) and cols[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def run_iperf(lab: Lab, server, client, server_ip: str, seconds: float,
              options: tuple[str, ...] = ()) -> dict:
    """One iperf3 run client -> server (`iperf3 -s -1` in server, `iperf3 -c` with
    ``options`` in client); the client's JSON report, which includes the server's side."""
    srv = lab.popen(server, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not _listening(srv.pid, IPERF_PORT):
            if srv.poll() is not None:
                raise BenchError(f"iperf3 server exited: {srv.stderr.read() if srv.stderr else ''}")
            if time.monotonic() > deadline:
                raise BenchError("iperf3 server did not start listening within 10s")
            time.sleep(0.02)
        cp = lab.run(client, ["iperf3", "-c", server_ip, "-p", str(IPERF_PORT),
                              "-t", f"{seconds:g}", "-J", *options], timeout=seconds + 60)
        try:
            data = json.loads(cp.stdout)
        except json.JSONDecodeError:
            raise BenchError(f"iperf3 client gave no JSON (rc {cp.returncode}): "
                             f"{cp.stdout[-500:]} {cp.stderr[-500:]}") from None
        if data.get("error"):
            raise BenchError(f"iperf3: {data['error']}")
        return data
    except BaseException:
        # Failed or interrupted: don't wait for a server that may never get a client.
        srv.kill()
        srv.wait()
        raise
    finally:
        # After a good run `iperf3 -s -1` exits by itself once the client is done.
        try:
            srv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def measure_iperf(lab: Lab, server, client, server_ip: str, seconds: float) -> dict[str, float]:
    """One iperf3 TCP run client -> server; bits/s as received by the server."""
    end = run_iperf(lab, server, client, server_ip, seconds)["end"]
    return {
        "throughput_bps": float(end["sum_received"]["bits_per_second"]),
        "sent_bps": float(end["sum_sent"]["bits_per_second"]),
        "retransmits": int(end["sum_sent"].get("retransmits", 0)),
    }


def measure_pps(lab: Lab, server, client, server_ip: str, seconds: float) -> dict[str, float]:
    """One iperf3 UDP run of 64-byte frames as fast as the client can send them: the
    packets per second the server received (sent minus lost)."""
    end = run_iperf(lab, server, client, server_ip, seconds,
                    ("-u", "-b", "0", "-l", str(SMALL_PAYLOAD)))["end"]
    got = end["sum"]
    received = int(got["packets"]) - int(got.get("lost_packets", 0))
    return {"small_pps": received / float(got["seconds"])}


# ---------------------------------------------------------------------------
# Topologies: each returns (lab-local) sender, receiver and receiver's address


def _underlay(lab: Lab) -> tuple[Host, Host]:
    sw = lab.switch("sw")
    return lab.host("host1", sw, "10.0.0.1/24"), lab.host("host2", sw, "10.0.0.2/24")


def build_veth(lab: Lab, state_dir: Path):
    h1, h2 = _underlay(lab)
    return h1, h2, h2.ip


def _make_vxlan_bridge(host: Host, bridge: str = "br97") -> None:
    """VXLAN device vxlan97 (multicast on eth0) enslaved to a fresh bridge, via netlink."""
    Interface.add_bridge(host.ns, bridge)
    vxlan = Interface(f"vxlan{VNI}", host.ns)
    with rtnl(host.ns) as ipr:
        ipr.link("add", ifname=vxlan.name, kind="vxlan", vxlan_id=VNI,
                 vxlan_group=VXLAN_GROUP, vxlan_link=ipr.link_lookup(ifname="eth0")[0],
                 vxlan_port=VXLAN_PORT, vxlan_ttl=1, vxlan_learning=1)
    vxlan.configure(master=bridge)


def build_vxlan(lab: Lab, state_dir: Path):
    h1, h2 = _underlay(lab)
    for h in (h1, h2):
        _make_vxlan_bridge(h)
    vm1 = lab.vm("vm1", h1, "br97", "10.97.0.1/24")
    vm2 = lab.vm("vm2", h2, "br97", "10.97.0.2/24")
    for vm in (vm1, vm2):
        vm.eth0.set_mtu(VXLAN_VM_MTU)
    return vm1, vm2, vm2.ip


def build_vnet(lab: Lab, state_dir: Path, datapath: str = "vnetd", security: str = "none",
               ports: bool = False):
    """`vn vnet-create 97` on two hosts served by ``datapath`` (vnetd, or the kernel
    module, which must be loaded already), a VM on each host's vnet97 bridge, or with
    ``ports`` on no bridge: the VM's host-side interface is a port of the vnet.  A
    secure vnet's hosts share one key made by `vn key-gen`."""
    h1, h2 = _underlay(lab)
    key = state_dir / "97.key"
    hosts = []
    for h in (h1, h2):
        vh = VnetHost(lab, h, state_dir / h.name, datapath=datapath)
        vh.start()
        hosts.append(vh)
        bridge = ("--bridge", "none") if ports else ()
        if security == "none":
            vh.vn("vnet-create", *bridge, str(VNI))
            continue
        if not key.exists():
            vh.vn("key-gen", str(key))
        vh.vn("vnet-create", "-s", security, "-k", str(key), *bridge, str(VNI))
    vms = []
    for vh, name, ip in zip(hosts, ("vm1", "vm2"), ("10.97.0.1/24", "10.97.0.2/24")):
        if ports:
            vms.append(lab.vm(name, vh.host, "", ip, port=f"p{name}", plugged=False))
            vh.vn("port-add", str(VNI), f"p{name}")
        else:
            vms.append(lab.vm(name, vh.host, f"vnet{VNI}", ip))
    return vms[0], vms[1], vms[1].ip


def build_endpoint(lab: Lab, state_dir: Path):
    """vnet 97 on two vnetd hosts: on host1 with no bridge and one UDP endpoint, the VM
    behind it through the QEMU stand-in; on host2 a VM on the vnet97 bridge."""
    h1, h2 = _underlay(lab)
    hosts = []
    for h in (h1, h2):
        vh = VnetHost(lab, h, state_dir / h.name)
        vh.start()
        hosts.append(vh)
    hosts[0].vn("vnet-create", "--bridge", "none", "--endpoint", f"udp {ENDPOINT_OURS} {ENDPOINT_THEIRS}",
                str(VNI))
    hosts[1].vn("vnet-create", str(VNI))
    vm1 = lab.vm("vm1", h1, "", "10.97.0.1/24", port="pvm1", plugged=False)
    lab.run(vm1, [sys.executable, "-c", NO_OFFLOAD, "eth0"], check=True)
    lab.run(h1, ["ip", "link", "set", "pvm1", "up"], check=True)
    peer = lab.popen(h1, [sys.executable, "-m", "lab.qemu_socket_peer", "--ifname", "pvm1",
                          "--dgram", ENDPOINT_THEIRS, ENDPOINT_OURS],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                     cwd=str(Path(__file__).resolve().parent.parent))
    line = peer.stdout.readline() if peer.stdout is not None else ""
    if line.strip() != "ready":
        raise BenchError(f"qemu_socket_peer did not start: {line}")
    vm2 = lab.vm("vm2", h2, f"vnet{VNI}", "10.97.0.2/24")
    return vm1, vm2, vm2.ip


BUILDERS: dict[str, Callable] = {
    "veth": build_veth, "vxlan": build_vxlan, "vnetd": build_vnet,
    "vnetd-port": functools.partial(build_vnet, ports=True),
    "vnetd-port-capture": functools.partial(build_vnet, ports=True),
    "vnetd-endpoint": build_endpoint,
    "vnetd-auth": functools.partial(build_vnet, security="auth"),
    "vnetd-conf": functools.partial(build_vnet, security="conf"),
}


# ---------------------------------------------------------------------------
# Driver


def start_idle_captures(lab: Lab, state_dir: Path, hosts: list[Host]) -> list[subprocess.Popen]:
    """`vn capture 97 IDLE_FILTER` on each host, returned once each captures."""
    procs = []
    for h in hosts:
        p = lab.popen(h, [sys.executable, "-m", "vnet.cli.vn", "--state-dir", str(state_dir / h.name),
                          "capture", "-w", "/dev/null", str(VNI), IDLE_FILTER],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                      cwd=str(Path(__file__).resolve().parent.parent))
        procs.append(p)
        line = p.stderr.readline() if p.stderr is not None else ""
        if "capturing vnet" not in line:
            raise BenchError(f"vn capture did not start on {h.name}: {line}")
    return procs


def stop_idle_captures(procs: list[subprocess.Popen]) -> None:
    """Interrupt them; each must have written 0 packets (its filter matched nothing)."""
    for p in procs:
        p.send_signal(signal.SIGINT)
        err = p.stderr.read() if p.stderr is not None else ""
        if p.wait(30) != 0 or " 0 packets written" not in err:
            raise BenchError(f"idle vn capture: {err}")


def measure(lab: Lab, name: str, src, dst, dst_ip: str, seconds: float, label: str) -> dict:
    r = measure_ping(lab, src, dst_ip)
    progress(f"{name}: {label}: rtt avg {r['rtt_avg_ms']:.3f} ms "
             f"(min {r['rtt_min_ms']:.3f}, max {r['rtt_max_ms']:.3f}, "
             f"loss {r['ping_loss_pct']:.0f}%); iperf3 for {seconds:g}s")
    r.update(measure_iperf(lab, dst, src, dst_ip, seconds))
    r.update(measure_pps(lab, dst, src, dst_ip, seconds))
    progress(f"{name}: {label}: {r['throughput_bps'] / 1e9:.3f} Gbit/s "
             f"({r['retransmits']} retransmits), {r['small_pps']:.0f} 64-byte frames/s")
    return r


def run_scenario(name: str, seconds: float, repeat: int, state_root: Path) -> dict:
    progress(f"{name}: building lab")
    keys = ("throughput_bps", "small_pps", "rtt_avg_ms", "rtt_min_ms", "rtt_max_ms")
    with_capture = name == "vnetd-port-capture"
    with Lab(prefix=f"vb{name}{os.getpid()}") as lab:
        src, dst, dst_ip = BUILDERS[name](lab, state_root / name)
        progress(f"{name}: waiting for {dst_ip} to answer")
        waited = lab.wait_ping(src, dst_ip, timeout=15)
        progress(f"{name}: reachable after {waited:.2f}s")
        runs = []
        for i in range(1, repeat + 1):
            r = measure(lab, name, src, dst, dst_ip, seconds, f"run {i}/{repeat}")
            if with_capture:
                procs = start_idle_captures(lab, state_root / name, [src.host, dst.host])
                try:
                    c = measure(lab, name, src, dst, dst_ip, seconds, f"run {i}/{repeat} with an idle capture")
                finally:
                    stop_idle_captures(procs)
                r.update({f"{k}_capture": c[k] for k in keys})
            runs.append(r)
    if lab.errors:
        progress(f"{name}: cleanup problems: {lab.errors}")
    if with_capture:
        keys += tuple(f"{k}_capture" for k in keys)
    return {"median": {k: statistics.median(r[k] for r in runs) for k in keys}, "runs": runs}


def _ratio(results: dict, a: str, b: str, key: str = "throughput_bps") -> float | None:
    try:
        num = results[a]["median"][key]
        den = results[b]["median"][key]
    except KeyError:
        return None
    return num / den if den else None


def _capture_ratio(results: dict, key: str = "throughput_bps") -> float | None:
    """vnetd-port-capture's figure with an idle capture over the one without."""
    m = results.get("vnetd-port-capture", {}).get("median")
    return m[f"{key}_capture"] / m[key] if m and m[key] else None


def format_table(results: dict) -> str:
    lines = [f"{'scenario':<14} {'throughput_Gbit/s':>18} {'64B_frames/s':>13} {'rtt_avg_ms':>11} "
             f"{'rtt_min_ms':>11} {'rtt_max_ms':>11}"]
    for name in SCENARIOS:
        if name not in results:
            continue
        res = results[name]
        if "error" in res:
            lines.append(f"{name:<14} {'FAILED: ' + res['error'].splitlines()[0][:60]}")
            continue
        m = res["median"]
        lines.append(f"{name:<14} {m['throughput_bps'] / 1e9:>18.3f} {m['small_pps']:>13.0f} "
                     f"{m['rtt_avg_ms']:>11.3f} "
                     f"{m['rtt_min_ms']:>11.3f} {m['rtt_max_ms']:>11.3f}")
    r = _ratio(results, "vnetd", "vxlan")
    if r is not None:
        verdict = "ok" if r >= TARGET_VNETD_VS_VXLAN else "BELOW TARGET"
        lines.append(f"ratio vnetd/vxlan throughput: {r:.2f}   "
                     f"(target >= {TARGET_VNETD_VS_VXLAN:.2f}: {verdict})")
    r, p = _ratio(results, "vnetd-port", "vnetd"), _ratio(results, "vnetd-port", "vnetd", "small_pps")
    if r is not None and p is not None:
        lines.append(f"ratio vnetd-port/vnetd (bridge): throughput {r:.2f}, 64-byte frames/s {p:.2f}")
    r, p = _capture_ratio(results), _capture_ratio(results, "small_pps")
    if r is not None and p is not None:
        m = results["vnetd-port-capture"]["median"]
        lines.append(f"vnetd-port-capture with an idle vn capture on both hosts: "
                     f"{m['throughput_bps_capture'] / 1e9:.3f} Gbit/s, {m['small_pps_capture']:.0f} 64-byte "
                     f"frames/s; ratio with/without: throughput {r:.2f}, 64-byte frames/s {p:.2f}")
    r, p = _ratio(results, "vnetd-endpoint", "vnetd"), _ratio(results, "vnetd-endpoint", "vnetd", "small_pps")
    if r is not None and p is not None:
        lines.append(f"ratio vnetd-endpoint/vnetd (bridge): throughput {r:.2f}, 64-byte frames/s {p:.2f}")
    for level in ("auth", "conf"):
        r = _ratio(results, f"vnetd-{level}", "vnetd")
        if r is not None:
            lines.append(f"ratio vnetd-{level}/vnetd throughput: {r:.2f}")
    r = _ratio(results, "vnetd", "veth")
    if r is not None:
        lines.append(f"ratio vnetd/veth throughput: {r:.2f}")
    r = _ratio(results, "vxlan", "veth")
    if r is not None:
        lines.append(f"ratio vxlan/veth throughput: {r:.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.bench_throughput",
        description="VM-to-VM TCP throughput (iperf3) and ping latency across two simulated "
                    "hosts: bare veth underlay vs kernel VXLAN vs vnetd.")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="iperf3 duration per run (default: 5)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per scenario; the table shows the median (default: 1)")
    p.add_argument("--json", metavar="FILE", help="also write all numbers to FILE as JSON")
    p.add_argument("--only", action="append", choices=SCENARIOS, metavar="SCENARIO",
                   help=f"run only this scenario (repeatable; one of {', '.join(SCENARIOS)})")
    args = p.parse_args(argv)
    if args.seconds <= 0:
        p.error("--seconds must be positive")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench_throughput: must run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    if shutil.which("iperf3") is None or shutil.which("ping") is None:
        print("bench_throughput: needs iperf3 and iputils ping (apt-get install iperf3 iputils-ping)",
              file=sys.stderr)
        return 2
    stale = cleanup_stale("vb*")
    if stale:
        progress(f"removed namespaces left by killed runs: {', '.join(stale)}")
    Lab.install_signal_handlers()
    wanted = [s for s in SCENARIOS if not args.only or s in args.only]
    state_root = Path(tempfile.mkdtemp(prefix="vnet-bench-"))
    results: dict[str, dict] = {}
    try:
        for name in wanted:
            try:
                results[name] = run_scenario(name, args.seconds, args.repeat, state_root)
            except Exception as exc:  # report it, go on with the other scenarios
                progress(f"{name}: FAILED: {exc}")
                log = state_root / name
                for f in sorted(log.glob("*/vnetd.log")):
                    progress(f"{name}: {f.parent.name} vnetd.log tail:\n"
                             + "".join(f.read_text(errors="replace").splitlines(True)[-20:]))
                results[name] = {"error": str(exc)}
    except KeyboardInterrupt:
        progress("interrupted; labs removed")
        return 130
    finally:
        shutil.rmtree(state_root, ignore_errors=True)

    print(format_table(results))
    if args.json:
        doc = {
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                        "python": platform.python_version()},
            "settings": {"seconds": args.seconds, "repeat": args.repeat,
                         "ping_count": PING_COUNT, "ping_interval_s": PING_INTERVAL,
                         "vxlan_vm_mtu": VXLAN_VM_MTU},
            "scenarios": results,
            "ratios": {
                "vnetd/vxlan": _ratio(results, "vnetd", "vxlan"),
                "vnetd/veth": _ratio(results, "vnetd", "veth"),
                "vnetd-port/vnetd": _ratio(results, "vnetd-port", "vnetd"),
                "vnetd-port/vnetd small_pps": _ratio(results, "vnetd-port", "vnetd", "small_pps"),
                "vnetd-port-capture with/without an idle capture": _capture_ratio(results),
                "vnetd-port-capture with/without an idle capture small_pps": _capture_ratio(results, "small_pps"),
                "vnetd-endpoint/vnetd": _ratio(results, "vnetd-endpoint", "vnetd"),
                "vnetd-endpoint/vnetd small_pps": _ratio(results, "vnetd-endpoint", "vnetd", "small_pps"),
                "vnetd-auth/vnetd": _ratio(results, "vnetd-auth", "vnetd"),
                "vnetd-conf/vnetd": _ratio(results, "vnetd-conf", "vnetd"),
                "vxlan/veth": _ratio(results, "vxlan", "veth"),
            },
            "target_vnetd_vs_vxlan": TARGET_VNETD_VS_VXLAN,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        progress(f"wrote {args.json}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
