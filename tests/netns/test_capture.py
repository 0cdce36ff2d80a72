"""`vn capture` (doc/capture.md), judged by tshark and mergecap.

One lab for everything: two hosts on vnet 97, a VM on the bridge of h1 and a VM
behind a port of h2 (no bridge), and a VM behind a socket endpoint of h1
(lab/qemu_socket_peer.py plays its QEMU).  While pings and a TCP transfer run:
captures with a count on both hosts hold exactly the ICMP packets sent, at the
points they crossed and in the right direction, with the host/vnet names and
comments; mergecap of the two files reads; a capture piped into `tshark -r -`
works; a filter that matches nothing writes 0 packets; bad input is refused before
any file is written.  Written for both datapaths (make_hosts), so the kernel
module's guest runs it too (tests/kernel/in_guest/test_kmod_capture.py)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, needs_root
from netns.test_ports import port_vm, wait_attached
from netns.test_qemu_endpoints import start_peer

from lab.traffic import transfer

pytestmark = [needs_root, pytest.mark.root,
              pytest.mark.skipif(not (shutil.which("tshark") and shutil.which("mergecap")),
                                 reason="needs tshark and mergecap (setup.sh installs tshark)")]

#: Generous: reached only when something is wrong (the test guest is slow).
DEADLINE = 120.0
PINGS, EP_PINGS, PIPE_PINGS = 5, 3, 3
TCP_BYTES = 20000


def vn_argv(vh, *args: str) -> list[str]:
    return [sys.executable, "-m", "vnet.cli.vn", "--state-dir", str(vh.state_dir), "--datapath",
            vh.datapath, *args]


class Running:
    """A `vn capture` in the background, started once it says it captures."""

    def __init__(self, lab, vh, *args: str) -> None:
        self.proc = vh.popen_vn("capture", "--host-name", vh.name, *args,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.said = ""
        while "capturing vnet" not in self.said:
            line = self.proc.stderr.readline()
            if not line:
                self.proc.kill()
                raise AssertionError(f"vn capture {args} did not start: {self.said}{self.proc.stderr.read()}")
            self.said += line

    def wait(self, interrupt: bool = False) -> str:
        if interrupt:
            self.proc.send_signal(signal.SIGINT)
        err = self.said + self.proc.stderr.read()
        assert self.proc.wait(DEADLINE) == 0, err
        return err


def tshark(path: Path | str, *fields: str, display: str = "") -> list[list[str]]:
    argv = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    argv += ["-Y", display] if display else []
    for f in fields:
        argv += ["-e", f]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert cp.returncode == 0, cp.stderr
    return [line.split("|") for line in cp.stdout.splitlines()]


def capinfo(path: Path) -> str:
    cp = subprocess.run(["capinfos", str(path)], capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def ping(lab, vm, addr: str, count: int) -> None:
    r = lab.ping(vm, addr, count=count, interval=0.2, timeout=30)
    assert r.received == count and r.duplicates == 0, r.output


def endpoint_vm(lab, vh):
    """A VM behind a udp socket endpoint of vnet 97 on `vh`, its QEMU played by
    lab/qemu_socket_peer.py in vh's namespace."""
    vm = lab.vm("ve", vh.host, "", "10.97.0.3/24", plugged=False)
    lab.run(vh.host, ["ip", "link", "set", "vve", "up"], check=True)
    start_peer(lab, ["--dgram", "127.0.0.1:5101", "127.0.0.1:5100"], vh.host.ns, "vve", host=vh.host)
    vh.vn("endpoint-add", "97", "udp", "127.0.0.1:5100", "127.0.0.1:5101")
    return vm


def test_vn_capture_on_every_point_read_by_tshark(lab, make_hosts, tmp_path):
    """Every point of both hosts (the datapath's part, which the module's guest runs
    too), then what is `vn capture`'s own whatever the datapath: a pipe, a TCP
    transfer, a filter matching nothing, the underlay of a conf vnet, bad input."""
    h1, h2, vm1, vp, f1 = every_point_read_by_tshark(lab, make_hosts, tmp_path)
    # The file names its host, vnet, datapath and filter (capinfos: another start of
    # Wireshark's libraries, seconds in the module's guest, so here only).
    info = capinfo(f1)
    assert f"vn capture of vnet {h1.vn_json('vnets')[0]['id']} (97) on host {h1.name}, underlay {h1.ip}, " \
           f"datapath {h1.datapath}; filter: icmp" in info, info
    assert f"of vnet 0000:0000:0000:0000:0000:0000:0000:0097 on host {h1.name}, underlay {h1.ip}" in info, info
    nothing = Running(lab, h1, "97", "-w", str(tmp_path / "none.pcapng"), "udp port 9")
    tcp = Running(lab, h2, "97", "-w", str(tmp_path / "tcp.pcapng"), "-i", vp.port, "tcp port 5001")

    # Into a pipe, packet by packet, as `vn capture 97 | tshark -r -`; when tshark has
    # read its fill (-c) and goes, vn stops at its next packet (EPIPE) and says so.
    err_file = tmp_path / "pipe.err"
    capture = " ".join(vn_argv(h1, "capture", "--host-name", h1.name, "-i", "bridge:vvm1", "97", "icmp"))
    shell = (f"{capture} 2>{err_file} | tshark -n -r - -c {2 * PIPE_PINGS} "
             "-T fields -e frame.interface_name -e icmp.type")
    pipe = lab.popen(h1.host, ["sh", "-c", shell],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    deadline = time.monotonic() + DEADLINE
    while "capturing vnet" not in (err_file.read_text() if err_file.exists() else ""):
        assert time.monotonic() < deadline and pipe.poll() is None, "vn capture | tshark did not start"
        time.sleep(0.05)
    ping(lab, vm1, vp.ip, PIPE_PINGS)
    while pipe.poll() is None:  # more packets, until one finds the pipe closed
        assert time.monotonic() < deadline, f"vn capture did not stop: {err_file.read_text()}"
        ping(lab, vm1, vp.ip, 1)
    out = pipe.stdout.read()
    assert pipe.returncode == 0 and "(the reader closed the pipe)" in err_file.read_text(), err_file.read_text()
    assert Counter(out.split()) == Counter({f"{h1.name}/97/bridge:vvm1": 2 * PIPE_PINGS, "8": PIPE_PINGS,
                                            "0": PIPE_PINGS}), out

    # A TCP transfer decodes, every byte of it; a filter matching nothing wrote nothing.
    transfer(lab, vm1, vp, "tcp", TCP_BYTES)
    assert "0 packets written" in nothing.wait(interrupt=True)
    assert "Number of packets:   0\n" in capinfo(tmp_path / "none.pcapng")
    tcp.wait(interrupt=True)
    data = tshark(tmp_path / "tcp.pcapng", "tcp.len", "frame.p2p_dir",
                  display="tcp.dstport == 5001 && !tcp.analysis.retransmission")
    assert sum(int(n) for n, _ in data) == TCP_BYTES and {d for _, d in data} == {"0"}, data

    underlay_of_a_conf_vnet_opens_with_its_key(lab, h1, h2, tmp_path, vm1, vp.ip)
    bad_capture_input_is_refused(h1, tmp_path)


def every_point_read_by_tshark(lab, make_hosts, tmp_path):
    """Two hosts, a bridge-mode VM and a socket endpoint's on one, a port on the
    other: counted captures of every point, merged, read by tshark."""
    h1, h2 = make_hosts(2)
    h1.vn("vnet-create", "97")
    vm1 = lab.vm("vm1", h1.host, "vnet97", "10.97.0.1/24")
    vp = port_vm(lab, h2, "p", "10.97.0.2/24")
    h2.vn("vnet-create", "-b", "none", "--port", vp.port, "97")
    wait_attached(h2, [vp.port])
    ve = endpoint_vm(lab, h1)
    lab.wait_ping(vm1, vp.ip, timeout=DEADLINE)
    lab.wait_ping(ve, vp.ip, timeout=DEADLINE)

    # Counted captures: every ICMP packet at every point it crosses, nothing else.
    # h1: vm1's pings cross its bridge member and the tunnel (4 packets each), ve's
    # its endpoint (2 each); h2: every ping crosses the port twice.
    n1 = 4 * PINGS + 2 * EP_PINGS
    n2 = 2 * (PINGS + EP_PINGS)
    f1, f2 = tmp_path / "h1.pcapng", tmp_path / "h2.pcapng"
    c1 = Running(lab, h1, "97", "-w", str(f1), "-c", str(n1), "icmp")
    c2 = Running(lab, h2, "-c", str(n2), "-w", str(f2), "-i", f"port:{vp.port}", "97", "icmp")
    ping(lab, vm1, vp.ip, PINGS)
    ping(lab, ve, vp.ip, EP_PINGS)
    assert f"{n1} packets written to {f1} (after {n1} packets); 0 dropped by the kernel" in c1.wait()
    assert f"{n2} packets written to {f2}" in c2.wait()

    # Both hosts' captures merged (one tshark run: each costs seconds in the test
    # guest) still say where each packet was seen, and in which direction.
    merged = tmp_path / "merged.pcapng"
    subprocess.run(["mergecap", "-w", str(merged), str(f1), str(f2)], check=True, timeout=DEADLINE)
    seen = Counter((name, icmp, direction) for name, icmp, direction in
                   tshark(merged, "frame.interface_name", "icmp.type", "frame.p2p_dir"))
    # p2p_dir 1: inbound (into the vnet at that point), 0: outbound.
    at1, at2 = f"{h1.name}/97/", f"{h2.name}/97/port:{vp.port}"
    want = Counter({(at1 + "bridge:vvm1", "8", "1"): PINGS, (at1 + "bridge:vvm1", "0", "0"): PINGS,
                    (at1 + "tunnel", "8", "0"): PINGS, (at1 + "tunnel", "0", "1"): PINGS,
                    (at2, "8", "0"): n2 // 2, (at2, "0", "1"): n2 // 2,
                    (at1 + "endpoint:udp:127.0.0.1:5100", "8", "1"): EP_PINGS,
                    (at1 + "endpoint:udp:127.0.0.1:5100", "0", "0"): EP_PINGS})
    assert seen == want
    return h1, h2, vm1, vp, f1


def underlay_of_a_conf_vnet_opens_with_its_key(lab, h1, h2, tmp_path: Path, vm97, ip97: str) -> None:
    """--underlay captures vnet 96's sealed packets, and only them; --decrypt writes
    the frames inside, which tshark decodes as ICMP."""
    key = tmp_path / "96.key"
    h1.vn("key-gen", str(key))
    for vh in (h1, h2):
        vh.vn("vnet-create", "-s", "conf", "-k", str(key), "96")
    a = lab.vm("a", h1.host, "vnet96", "10.96.0.1/24")
    b = lab.vm("b", h2.host, "vnet96", "10.96.0.2/24")
    lab.wait_ping(a, b.ip, timeout=DEADLINE)
    out = tmp_path / "underlay.pcapng"
    cap = Running(lab, h1, "96", "--underlay", "--decrypt", "-w", str(out))
    ping(lab, a, b.ip, PINGS)
    ping(lab, vm97, ip97, 1)  # vnet 97 on the same wire: not captured
    err = cap.wait(interrupt=True)
    assert "opening the sealed packets with the vnet's key" in err, err
    rows = tshark(out, "frame.interface_name", "icmp.type", "frame.p2p_dir", "frame.comment", "udp.payload")
    at = f"{h1.name}/96/opened:eth0"
    # Opened: the ICMP of the pings, each once (ARP too, not counted).
    opened = Counter((name, icmp, d) for name, icmp, d, _, _ in rows if name == at and icmp)
    assert opened == Counter({(at, "8", "0"): PINGS, (at, "0", "1"): PINGS}), rows
    assert all("opened with the vnet's key: sealed by " in c for n, _, _, c, _ in rows if n == at), rows
    # Whatever else was captured is vnet 96's own (sealed VARP), still sealed.
    others = [p for n, _, _, _, p in rows if n != at]
    assert all(p.startswith("0004") and p[8:40] == "0" * 28 + "0096" for p in others), others
    assert "sealed frames opened with the vnet's key (--decrypt)" in capinfo(out)


def bad_capture_input_is_refused(vh, tmp_path: Path) -> None:
    out = tmp_path / "bad.pcapng"

    def refused(args: tuple[str, ...], message: str) -> None:
        cp = vh.vn("capture", "-w", str(out), *args, check=False)
        assert cp.returncode != 0 and message in cp.stderr, (args, cp.stderr)
        assert not out.exists(), args

    refused(("97", "icmp", "and", "bogus"), "capture filter 'icmp and bogus' does not compile: ")
    refused(("9e", "icmp"), "9e")
    refused(("-i", "port:nosuch", "97"), "capture point 'port:nosuch' is not one of this vnet's here: tunnel")
    refused(("--decrypt", "--underlay", "97"), "is not a conf vnet")
    assert not os.path.exists(out)
