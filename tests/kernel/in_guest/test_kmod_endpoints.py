"""Socket endpoints of the kernel module (doc/endpoints.md), with lab/qemu_socket_peer.py
standing in for QEMU, which nested in the test guest would be far too slow.

One lab, as tests/netns/test_endpoint_vnet.py builds it for vnetd and with its
endpoints (97 and 98 udp, 99 tcp-connect, 9a tcp-listen, made by `vn vnet-create
--endpoint` and `vn endpoint-add`): on the module host, a stand-in speaks QEMU's
side of the 97, 99 and 9a endpoints for a namespace VM, which pings a VM behind a
port of the same vnet on a second module host.  Then, with no command: every
stand-in is killed (-9) and started again and the pings resume; `vn rmmod` and `vn
insmod` bring the endpoints back from the state and the pings resume.  Each time the
counts show that no frame a stand-in sends comes back to it.  Last, addresses in
use: clear errors, nothing half-made; and a deleted vnet's endpoint frees its
address at once.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from netns.test_endpoint_vnet import CASES, endpoints_by_vnet, long_id, wait_states
from netns.test_ports import port_vm, wait_attached
from netns.test_qemu_endpoints import start_peer

from vnet.datapath.kmod import loader

VNET_KO = Path(os.environ.get("VNET_KO") or loader.default_module_path())
DEADLINE = 60.0

#: vnet -> QEMU's side of its endpoint in CASES, as the stand-in plays it: it binds
#: the udp endpoint's REMOTE and sends to its LOCAL; it listens where our
#: tcp-connect endpoint connects; it connects to our tcp-listen endpoint, again a
#: moment after a loss (QEMU 8's `stream,reconnect=`: a QEMU without it stays cut
#: off after a restart of the vnet side, doc/endpoints.md).
PEERS = {
    "97": ["--dgram", "127.0.0.1:5002", "127.0.0.1:5001"],
    "99": ["--listen", "127.0.0.1:5005"],
    "9a": ["--connect", "127.0.0.1:5006", "--reconnect", "0.2"],
}


def rx_packets(lab, vm) -> int:
    """Frames the VM's interface received: the ones its stand-in handed it (from
    /proc/net/dev, which is the reader's namespace's, as /sys need not be)."""
    dev = lab.run(vm, ["cat", "/proc/net/dev"], check=True).stdout
    line = next(ln for ln in dev.splitlines() if ln.strip().startswith("eth0:"))
    return int(line.split(":", 1)[1].split()[1])


def snapshot(lab, qh, vh, vms, final: bool = False) -> dict[str, tuple[int, dict, int]]:
    """Per vnet: the stand-in VM's rx count, our endpoint's record, and the frames the
    far VM's port took into the vnet.  The VMs may send at any time (IPv6 does), so
    the port is read before our endpoint at the start and after it at the end: a
    frame in flight meanwhile can then only make our endpoint's share look smaller."""
    def far() -> dict[str, int]:
        return {p["ifname"]: p["rx_packets"] for p in vh.vn_json("ports")}

    ports = None if final else far()
    eps = endpoints_by_vnet(qh)
    rx = {v: rx_packets(lab, vms[v][0]) for v in PEERS}
    ports = ports or far()
    return {v: (rx[v], eps[long_id(v)], ports[vms[v][1].port]) for v in PEERS}


def quiet_snapshot(lab, qh, vh, vms) -> dict[str, tuple[int, dict, int]]:
    """A snapshot during which nothing moved (two in a row alike): a frame in flight
    when the base is taken would later count as one the VM got that we never sent."""
    def moved(s: dict) -> dict:
        return {v: (rx, e["tx_packets"], e["rx_packets"], far) for v, (rx, e, far) in s.items()}

    deadline = time.monotonic() + DEADLINE
    last = snapshot(lab, qh, vh, vms)
    while True:
        now = snapshot(lab, qh, vh, vms)
        if moved(now) == moved(last):
            return now
        assert time.monotonic() < deadline, f"frames kept moving: {moved(last)} then {moved(now)}"
        last = now


def check_no_echo(lab, qh, vh, vms, base) -> None:
    """Since `base`: each stand-in's VM got every frame we sent its endpoint, and we sent
    it no more frames than the far VM put into the vnet (every one of which reaches
    the endpoint): one of the VM's own frames sent back would be one more."""
    deadline = time.monotonic() + DEADLINE
    while True:
        now = snapshot(lab, qh, vh, vms, final=True)
        got = {v: (now[v][0] - base[v][0], now[v][1]["tx_packets"] - base[v][1]["tx_packets"]) for v in PEERS}
        if all(vm_rx == ep_tx for vm_rx, ep_tx in got.values()):
            break
        assert time.monotonic() < deadline, f"the stand-ins' VMs did not get what we sent them: {got}"
        time.sleep(0.2)
    for v in PEERS:
        (_, e, far), (_, e0, far0) = now[v], base[v]
        sent = e["tx_packets"] - e0["tx_packets"]
        assert 0 < sent <= far - far0, (v, e0, e, far0, far)
        assert e["rx_packets"] > e0["rx_packets"] and e["drops"] == e0["drops"], (v, e0, e)


def ping_all(lab, vms) -> None:
    for v, (_, far) in vms.items():
        lab.wait_ping(far, far_ip(v, stand_in=True), timeout=DEADLINE)


def far_ip(vid: str, stand_in: bool) -> str:
    return f"10.{int(vid, 16)}.0.{2 if stand_in else 1}"


def address_in_use_leaves_nothing(qh) -> None:
    """An address another program holds (the udp stand-in's socket, the tcp-connect
    stand-in's listener) is refused by the module with vnetd's words, and nothing is
    made: neither an endpoint nor, from vnet-create, a vnet.  (The refusals the
    state and the syntax make before any datapath is asked are the vnetd test's.)"""
    before = (qh.vn_json("endpoints"), qh.vn_json("vnet-list"))
    for args, message in (
            (("endpoint-add", "98", "udp", "127.0.0.1:5002", "127.0.0.1:5009"),
             "endpoint udp 127.0.0.1:5002 127.0.0.1:5009: cannot bind 127.0.0.1:5002: Address already in use"),
            (("endpoint-add", "98", "tcp-listen", "127.0.0.1:5005"),
             "endpoint tcp-listen 127.0.0.1:5005: cannot bind 127.0.0.1:5005: Address already in use"),
            (("vnet-create", "-b", "none", "--endpoint", "udp 127.0.0.1:5002 127.0.0.1:5009", "9b"),
             "cannot bind 127.0.0.1:5002: Address already in use")):
        cp = qh.vn(*args, check=False)
        assert cp.returncode != 0 and message in cp.stderr, (args, cp.stderr)
    assert "vnif9b" not in qh.lab.link_names(qh.host)
    after = (qh.vn_json("endpoints"), qh.vn_json("vnet-list"))
    assert [[(e["vnet"], e["kind"], e["local"], e["remote"]) for e in eps] for eps in (before[0], after[0])] \
        == [[(e["vnet"], e["kind"], e["local"], e["remote"]) for e in before[0]]] * 2
    assert after[1] == before[1]


def test_module_endpoints_carry_qemu_framing_and_survive_restarts(lab, make_hosts):
    qh, vh = make_hosts(2)
    for n, (vid, _netdev, words) in enumerate(CASES):
        if n % 2:
            qh.vn("vnet-create", "-b", "none", "--endpoint", words, vid)
        else:
            qh.vn("vnet-create", "-b", "none", vid)
            qh.vn("endpoint-add", vid, *words.split())
    listed = qh.vn_json("endpoints")
    assert [(e["vnet"], e["kind"], e["local"], e["remote"]) for e in listed] == [
        (long_id("97"), "udp", "127.0.0.1:5001", "127.0.0.1:5002"),
        (long_id("98"), "udp", "127.0.0.1:5003", "127.0.0.1:5004"),
        (long_id("99"), "tcp-connect", "-", "127.0.0.1:5005"),
        (long_id("9a"), "tcp-listen", "127.0.0.1:5006", "-")]
    assert {e["vnet"]: e["state"] for e in listed} == {
        long_id("97"): "connected", long_id("98"): "connected", long_id("99"): "waiting",
        long_id("9a"): "listening"}

    # vms[vid] = (the stand-in's VM on qh, the VM behind a port on vh)
    vms = {}
    for vid in PEERS:
        near = port_vm(lab, qh, f"q{vid}", f"{far_ip(vid, True)}/24")
        # The cable's far end plays QEMU's side: the host's stack sends nothing on it,
        # so the VM gets only the frames its stand-in hands it.
        lab.sysctl(qh.host, {f"net.ipv6.conf.{near.port}.disable_ipv6": "1"})
        lab.run(qh.host, ["ip", "link", "set", near.port, "up"], check=True)
        far = port_vm(lab, vh, f"f{vid}", f"{far_ip(vid, False)}/24")
        for vm in (near, far):  # no IPv6 chatter (solicitations, reports) between the counts
            lab.sysctl(vm, {"net.ipv6.conf.all.disable_ipv6": "1"})
        vh.vn("vnet-create", "-b", "none", "--port", far.port, vid)
        vms[vid] = (near, far)
    wait_attached(vh, [far.port for _, far in vms.values()])

    def start_peers() -> dict:
        return {v: start_peer(lab, args, qh.host.ns, vms[v][0].port, host=qh.host) for v, args in PEERS.items()}

    peers = start_peers()
    wait_states(qh, {v: "connected" for v in PEERS})
    base = quiet_snapshot(lab, qh, vh, vms)
    ping_all(lab, vms)
    check_no_echo(lab, qh, vh, vms, base)

    # QEMU killed and started again: nothing done on our side.  The TCP kinds, where
    # the module accepts again or connects again (a udp endpoint keeps no state).
    for v in ("99", "9a"):
        peers[v].kill()
        peers[v].wait()
    # The module has seen both connections end (until then it may still send on one,
    # counting a frame no stand-in reads), then the new stand-ins start.
    wait_states(qh, {"99": "waiting", "9a": "listening"})
    for v in ("99", "9a"):
        peers[v] = start_peer(lab, PEERS[v], qh.host.ns, vms[v][0].port, host=qh.host)
    wait_states(qh, {v: "connected" for v in PEERS})
    base = quiet_snapshot(lab, qh, vh, vms)
    ping_all(lab, vms)
    check_no_echo(lab, qh, vh, vms, base)

    # The module unloaded and loaded again: the endpoints come back from the state.
    qh.vn("rmmod")
    out = qh.vn("insmod", "-m", str(VNET_KO), "-a", qh.ip).stdout
    assert f"restored {len(CASES)} of {len(CASES)} vnets" in out, out
    vh.start()  # the other simulated host in the same kernel
    wait_attached(vh, [far.port for _, far in vms.values()])
    eps = wait_states(qh, {v: "connected" for v in PEERS})
    assert eps[long_id("98")]["state"] == "connected"
    base = quiet_snapshot(lab, qh, vh, vms)
    ping_all(lab, vms)
    check_no_echo(lab, qh, vh, vms, base)

    address_in_use_leaves_nothing(qh)
    # Deleting a vnet closes its endpoints at once: the address is free again.
    qh.vn("vnet-delete", "9a")
    qh.vn("endpoint-add", "98", "tcp-listen", "127.0.0.1:5006")
    assert [e["vnet"] for e in qh.vn_json("endpoints") if e["local"] == "127.0.0.1:5006"] == [long_id("98")]
