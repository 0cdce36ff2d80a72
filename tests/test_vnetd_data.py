"""Data integrity through vnetd: TCP super-frames, finished checksums, mixed offload hosts."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import needs_root

pytestmark = [needs_root, pytest.mark.root]

SINK = r"""
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001))
h = hashlib.sha256()
n = 0
if sys.argv[1] == "tcp":
    s.listen(1)
    print("ready", flush=True)
    c, _ = s.accept()
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b); n += len(b)
else:
    s.settimeout(60)  # the sender may take a while to start (seconds in the test guest)
    print("ready", flush=True)
    try:
        while True:
            b = s.recv(65535)
            h.update(b); n += 1
            s.settimeout(3)
    except socket.timeout:
        pass
print(n, h.hexdigest(), flush=True)
"""

SOURCE = r"""
import hashlib, random, socket, sys, time
rnd = random.Random(5)
h = hashlib.sha256()
if sys.argv[2] == "tcp":
    data = rnd.randbytes(int(sys.argv[3]))
    s = socket.create_connection((sys.argv[1], 5001))
    s.sendall(data); s.close()
    print(len(data), hashlib.sha256(data).hexdigest())
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(sys.argv[3])):
        d = rnd.randbytes(rnd.randrange(1, 1400))
        h.update(d); s.sendto(d, (sys.argv[1], 5001)); time.sleep(0.002)
    print(int(sys.argv[3]), h.hexdigest())
"""


def transfer(lab, src, dst, kind: str, amount: int) -> None:
    sink = lab.popen(dst, [sys.executable, "-c", SINK, kind], stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    sent = lab.run(src, [sys.executable, "-c", SOURCE, dst.ip, kind, str(amount)], timeout=60)
    assert sent.returncode == 0, sent.stderr
    got = sink.stdout.readline().strip()
    sink.wait(10)
    assert got == sent.stdout.strip(), f"{kind}: sent {sent.stdout.strip()} received {got}"


@pytest.mark.parametrize("offload", [("--offload", "--offload"), ("--offload", "--no-offload"),
                                     ("--no-offload", "--offload")])
def test_tcp_and_udp_arrive_intact(lab, make_hosts, offload):
    hosts = make_hosts(2, start=False)
    for h, opt in zip(hosts, offload):
        h.start(opt)
        h.vn("vnet-create", "97")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip)
    transfer(lab, a, b, "tcp", 30 << 20)   # super-frames (when offloading) both ways: data and ACKs
    transfer(lab, b, a, "tcp", 10 << 20)
    transfer(lab, a, b, "udp", 300)        # small frames whose checksums vnetd finishes
    sizes = {h.ip: h.vn_json("vnets")[0] for h in hosts}
    sender = sizes[hosts[0].ip]
    if offload[0] == "--offload":
        assert sender["tx_bytes"] / sender["tx_packets"] > 1514, "no super-frames were sent"
    else:
        assert sender["tx_bytes"] / sender["tx_packets"] <= 1514
