"""vnetd's socket endpoints against the real QEMU, and the QEMU stand-in against both.

A tiny TCG guest (lab/nicguest.py: stock kernel, busybox, no disk) has one NIC of
each socket kind QEMU and libvirt offer: `-netdev dgram`, `-netdev socket,udp=`,
`-netdev stream` listening and connecting, `-netdev socket,listen=` and
`socket,connect=`.  Each NIC is joined to an endpoint of ours run by vnetd's own
event loop in this process; the test speaks through the endpoint with hand-built
ARP and ICMP frames (lab/frames.py), so every answer is the guest kernel's and
proves a frame crossed whole both ways, jumbo frames included.  Then QEMU is killed
(-9) and started again, and the same endpoints carry traffic again with nothing done
on our side.  The guest's own packet counters show that each frame we sent arrived
once and nothing else did (no echo), and that each frame it sent reached us.

lab/qemu_socket_peer.py, the stand-in for QEMU that the kernel module's tests use,
is checked twice: its framing against the real QEMU (a namespace VM pings the QEMU
guest through it), and against our endpoints (we ping the namespace VM through it).

Boots are short (one guest is up in about 15 s under TCG) and every wait is for an
event under a generous deadline.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from conftest import long_run, needs_root
from endpoint_harness import EndpointHarness, free_port

from lab.frames import Station, arp_reply_from, echo_reply
from lab.lab import Lab
from lab import qemu_socket_peer
from lab.nicguest import Nic, NicGuest
from lab.procs import in_this_interpreter
from vnet.datapath.vnetd.endpoint import Endpoint
from vnet.model.addr import format_mac

pytestmark = [long_run, pytest.mark.usefixtures("nic_guest_tools"), needs_root, pytest.mark.root, pytest.mark.qemu]

#: Boot under TCG on a loaded 2-core machine: a bound for a hung guest, not a target.
BOOT_DEADLINE = 600.0
DEADLINE = 60.0
MTU = 9000
#: Echo payloads: a small frame, one just over the usual 1500, one near the 9000 MTU.
PAYLOADS = (56, 1600, MTU - 28 - 8)






@pytest.fixture
def h():
    harness = EndpointHarness()
    yield harness
    harness.close()


def ping_through(h: EndpointHarness, ep: Endpoint, me: Station, ip: str, ident: int,
                 payloads: tuple[int, ...] = PAYLOADS) -> bytes:
    """ARP for `ip`, then one echo per payload size, through `ep`; every reply checked
    byte for byte.  Returns the MAC that answered.  The ARP request is sent again
    every second until answered (a link that is still coming up loses it)."""
    start = len(h.got[ep])
    mac: list[bytes] = []
    next_arp = 0.0

    def answered() -> bool:
        nonlocal next_arp
        for f in h.got[ep][start:]:
            m = arp_reply_from(f, ip)
            if m:
                mac.append(m)
                return True
        if time.monotonic() >= next_arp:
            ep.send(me.arp_request(ip))
            next_arp = time.monotonic() + 1.0
        return False

    h.pump(answered, f"ARP reply from {ip} through {ep}")
    for seq, size in enumerate(payloads, 1):
        payload = bytes((seq * 31 + i) & 0xFF for i in range(size))
        sent_at = len(h.got[ep])
        assert ep.send(me.echo_request(mac[0], ip, ident, seq, payload)), ep.counters()

        def replied() -> bool:
            return any(echo_reply(f, ip, ident) for f in h.got[ep][sent_at:])

        h.pump(replied, f"echo reply {seq} ({size} bytes) from {ip} through {ep}")
        replies = [r for f in h.got[ep][sent_at:] if (r := echo_reply(f, ip, ident))]
        assert replies == [(seq, payload)], f"reply {seq} through {ep} not byte-identical"
    return mac[0]


def qemu_nics() -> tuple[list[Nic], list[list[str]]]:
    """One NIC of each socket kind, with the endpoint of ours that matches it."""
    U, T = socket.SOCK_DGRAM, socket.SOCK_STREAM
    nics, specs = [], []

    def add(netdev: str, words: list[str]) -> None:
        i = len(nics) + 1
        nics.append(Nic(netdev, f"52:54:00:12:00:{i:02x}", f"10.0.{i}.2/24", mtu=MTU))
        specs.append(words)

    ours, theirs = free_port(U), free_port(U)
    add(f"dgram,local.type=inet,local.host=127.0.0.1,local.port={theirs},"
        f"remote.type=inet,remote.host=127.0.0.1,remote.port={ours}",
        ["udp", f"127.0.0.1:{ours}", f"127.0.0.1:{theirs}"])
    ours, theirs = free_port(U), free_port(U)
    add(f"socket,udp=127.0.0.1:{ours},localaddr=127.0.0.1:{theirs}",  # libvirt type='udp'
        ["udp", f"127.0.0.1:{ours}", f"127.0.0.1:{theirs}"])
    theirs = free_port(T)
    add(f"stream,server=on,addr.type=inet,addr.host=127.0.0.1,addr.port={theirs}",
        ["tcp-connect", f"127.0.0.1:{theirs}"])
    ours = free_port(T)
    add(f"stream,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port={ours}",
        ["tcp-listen", f"127.0.0.1:{ours}"])
    theirs = free_port(T)
    add(f"socket,listen=127.0.0.1:{theirs}",  # libvirt type='server'
        ["tcp-connect", f"127.0.0.1:{theirs}"])
    ours = free_port(T)
    add(f"socket,connect=127.0.0.1:{ours}",  # libvirt type='client'
        ["tcp-listen", f"127.0.0.1:{ours}"])
    return nics, specs


def test_endpoints_carry_frames_to_and_from_real_qemu_and_survive_its_restart(h):
    nics, specs = qemu_nics()
    eps = [h.open(*words) for words in specs]  # ours first: QEMU's socket,connect= needs us
    g = NicGuest(nics)
    try:
        for run in (1, 2):
            if run == 1:
                g.start()
            else:
                g.kill()
                # The old QEMU is gone: its connections end, the endpoints notice.
                h.pump(lambda: all(ep.state != "connected" for ep in eps if ep.spec.protocol == "tcp"),
                       "the endpoints to see QEMU gone")
                g.start()  # the same command line; nothing is done on our side
            before = [(ep.rx_packets, ep.tx_packets) for ep in eps]
            h.pump(lambda: g.seen(r"nic-guest: ready"), "guest boot", BOOT_DEADLINE)
            h.pump(lambda: all(ep.state == "connected" for ep in eps), "every endpoint connected")
            for i, (ep, nic) in enumerate(zip(eps, nics), 1):
                me = Station.of(f"52:54:00:99:00:{i:02x}", f"10.0.{i}.1")
                mac = ping_through(h, ep, me, f"10.0.{i}.2", ident=0x4000 + 16 * run + i)
                assert format_mac(mac) == nic.mac
            first = g.stats()
            # Let every frame the guest counted as sent arrive, then read its counts again.
            h.pump(lambda: all(ep.rx_packets - b[0] >= first[n.mac][1]
                               for ep, b, n in zip(eps, before, nics)), "the guest's frames")
            received = [ep.rx_packets - b[0] for ep, b in zip(eps, before)]
            sent = [ep.tx_packets - b[1] for ep, b in zip(eps, before)]
            second = g.stats()
            for ep, nic, rx, tx in zip(eps, nics, received, sent):
                # Every frame we sent arrived once, and nothing else did: no echo of its own.
                assert first[nic.mac][0] == tx == second[nic.mac][0], (ep, first, sent)
                # Every frame the guest sent arrived once.
                assert first[nic.mac][1] <= rx <= second[nic.mac][1], (ep, first, received)
                assert ep.framing_errors == ep.rx_runts == ep.rx_foreign == 0, ep.counters()
        # Both QEMU runs connected once each on every stream endpoint.
        assert [ep.connects for ep in eps] == [1, 1, 2, 2, 2, 2]
    finally:
        g.kill()


# -- the stand-in


def start_peer(lab: Lab, args: list[str], ns: str, ifname: str, host=None) -> subprocess.Popen:
    """lab/qemu_socket_peer.py on `ifname` of namespace `ns`, its socket in ours, or in
    `host`'s namespace if given (where the endpoints it talks to are)."""
    argv = ["--ifname", ifname, "--netns", ns, *args]
    # Forked from this process, not a new interpreter (seconds in the module's guest).
    kw = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True,
          "preexec_fn": in_this_interpreter(qemu_socket_peer.main, argv)}
    argv = [sys.executable, "-m", "lab.qemu_socket_peer", *argv]
    proc = lab.popen(host, argv, **kw) if host is not None else subprocess.Popen(argv, **kw)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"qemu_socket_peer {' '.join(args)}: {line}{proc.stdout.read()}")
    return proc


@pytest.fixture
def peers():
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def vm_behind_peer(lab: Lab, name: str, address: str):
    """A lab VM whose cable's far end (`v<name>`, in host `ph`) the peer will open."""
    host = lab.nodes.get("ph") or lab.host("ph", lab.switch("psw"), "10.9.9.1/24")
    vm = lab.vm(name, host, "none", address, plugged=False)
    lab.run(host, ["ip", "link", "set", f"v{name}", "up"], check=True)
    return host, vm


def test_peer_speaks_qemus_framing_with_real_qemu(lab, peers):
    """Namespace VMs ping the QEMU guest through the stand-in, on a datagram NIC and on
    stream NICs with the stand-in listening and connecting: only QEMU's own framing
    makes these pings work."""
    U, T = socket.SOCK_DGRAM, socket.SOCK_STREAM
    a, b = free_port(U), free_port(U)
    listen_port, connect_port = free_port(T), free_port(T)
    nics = [
        Nic(f"dgram,local.type=inet,local.host=127.0.0.1,local.port={a},"
            f"remote.type=inet,remote.host=127.0.0.1,remote.port={b}", "52:54:00:13:00:01", "10.0.1.2/24"),
        Nic(f"stream,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port={listen_port}",
            "52:54:00:13:00:02", "10.0.2.2/24"),
        Nic(f"stream,server=on,addr.type=inet,addr.host=127.0.0.1,addr.port={connect_port}",
            "52:54:00:13:00:03", "10.0.3.2/24"),
    ]
    host, vm1 = vm_behind_peer(lab, "q1", "10.0.1.1/24")
    _, vm2 = vm_behind_peer(lab, "q2", "10.0.2.1/24")
    _, vm3 = vm_behind_peer(lab, "q3", "10.0.3.1/24")
    peers.append(start_peer(lab, ["--dgram", f"127.0.0.1:{b}", f"127.0.0.1:{a}"], host.ns, "vq1"))
    peers.append(start_peer(lab, ["--listen", f"127.0.0.1:{listen_port}"], host.ns, "vq2"))
    with NicGuest(nics) as g:
        g.wait_ready(BOOT_DEADLINE)
        peers.append(start_peer(lab, ["--connect", f"127.0.0.1:{connect_port}"], host.ns, "vq3"))
        for vm, ip in ((vm1, "10.0.1.2"), (vm2, "10.0.2.2"), (vm3, "10.0.3.2")):
            lab.wait_ping(vm, ip, timeout=DEADLINE)
            # A frame of 1500 bytes, then one of QEMU's longest without GSO (MTU 1500 here).
            r = lab.run(vm, ["ping", "-c", "2", "-i", "0.2", "-s", "1472", "-W", "10", ip])
            assert r.returncode == 0, r.stdout + r.stderr


def test_peer_against_our_endpoints(lab, h, peers):
    """The stand-in in each of QEMU's roles joined to the matching endpoint of ours: we
    ping the namespace VM behind it.  The stand-in's connecting side restarts (as a
    QEMU would) and traffic resumes with nothing done on our side."""
    U, T = socket.SOCK_DGRAM, socket.SOCK_STREAM
    ours, theirs = free_port(U), free_port(U)
    udp = h.open("udp", f"127.0.0.1:{ours}", f"127.0.0.1:{theirs}")
    host, vm1 = vm_behind_peer(lab, "p1", "10.0.1.2/24")
    peers.append(start_peer(lab, ["--dgram", f"127.0.0.1:{theirs}", f"127.0.0.1:{ours}"], host.ns, "vp1"))

    listen_port = free_port(T)
    listening = h.open("tcp-listen", f"127.0.0.1:{listen_port}")
    _, vm2 = vm_behind_peer(lab, "p2", "10.0.2.2/24")
    peers.append(start_peer(lab, ["--connect", f"127.0.0.1:{listen_port}"], host.ns, "vp2"))

    connect_port = free_port(T)
    _, vm3 = vm_behind_peer(lab, "p3", "10.0.3.2/24")
    peers.append(start_peer(lab, ["--listen", f"127.0.0.1:{connect_port}"], host.ns, "vp3"))
    connecting = h.open("tcp-connect", f"127.0.0.1:{connect_port}")

    cases = [(udp, vm1, 1), (listening, vm2, 2), (connecting, vm3, 3)]
    for run in (1, 2):
        h.pump(lambda: all(ep.state == "connected" for ep, _, _ in cases), "every endpoint connected")
        for ep, vm, i in cases:
            me = Station.of(f"52:54:00:98:00:{i:02x}", f"10.0.{i}.1")
            mac = ping_through(h, ep, me, f"10.0.{i}.2", ident=0x5000 + 16 * run + i,
                               payloads=(56, 1472))
            assert format_mac(mac) == vm.mac
        if run == 1:  # both stream peers restarted, as a QEMU is
            for k in (1, 2):
                peers[k].kill()
                peers[k].wait()
            h.pump(lambda: listening.state == "listening" and connecting.state == "waiting",
                   "the endpoints to see the stand-ins gone")
            peers[1] = start_peer(lab, ["--connect", f"127.0.0.1:{listen_port}"], host.ns, "vp2")
            peers[2] = start_peer(lab, ["--listen", f"127.0.0.1:{connect_port}"], host.ns, "vp3")
    assert (listening.connects, connecting.connects) == (2, 2)
