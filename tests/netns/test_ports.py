"""Ports (doc/ports.md): interfaces attached to a vnet directly, with no bridge between.

Namespace VMs behind ports on two hosts: every layer-2 protocol crosses byte for byte
(LACP, which a Linux bridge never forwards, included), pause frames do not, frames
are switched between the ports of one host, jumbo frames cross both encapsulations,
a port follows its interface through a container restart and the datapath through a
kill -9, bad input leaves nothing half-made, and the host sends nothing into a port.
Written for both datapaths through make_hosts, so the kernel module's guest can run
them too."""
from __future__ import annotations

import json
import time

import pytest
from conftest import needs_root

from lab.capture import Capture
from lab.links import Interface
from lab.ping import parse_ping
from lab.procs import script_argv
from vnet.model.vnetid import VnetId

pytestmark = [needs_root, pytest.mark.root]

V97 = str(VnetId.parse("97"))
#: How long a test may wait for what must happen: generous, the test guest is slow.
DEADLINE = 60.0

#: Sends the frames given in hex (argv[2:]) out of interface argv[1], as they are.
SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h))
    time.sleep(0.01)
"""


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def send_frames(lab, vm, frames: list[bytes]) -> None:
    lab.run(vm, script_argv(SEND, "eth0", *(f.hex() for f in frames)), check=True, timeout=60)


def port_vm(lab, vh, name: str, address: str, mtu: int | None = None):
    """A VM whose veth's host end (`v<name>`) is on no bridge, for a port."""
    vm = lab.vm(name, vh.host, "", address, plugged=False)
    if mtu is not None:
        vm.eth0.set_mtu(mtu)
    return vm


def wait_attached(vh, names: list[str], timeout: float = DEADLINE) -> list[dict]:
    """`vn ports` once every port named is attached."""
    deadline = time.monotonic() + timeout
    while True:
        ports = vh.vn_json("ports")
        if all(any(p["ifname"] == n and p["state"] == "attached" for p in ports) for n in names):
            return ports
        assert time.monotonic() < deadline, f"ports {names} not attached on {vh.name}: {ports}"
        time.sleep(0.1)


def marker_frame(dst: bytes, src: bytes, marker: bytes, size: int = 60) -> bytes:
    """A frame of the local experimental ethertype 0x88b5 carrying `marker`."""
    head = dst + src + b"\x88\xb5" + marker
    return head + bytes(max(0, size - len(head)))


def matrix(src: bytes, dst: bytes) -> dict[str, bytes]:
    """The frames a lab link must carry unchanged, each with a marker of its own."""
    def pad(frame: bytes, n: int = 64) -> bytes:
        return frame + bytes(max(0, n - len(frame)))
    ipv4 = bytes.fromhex("45000054000040004001") + bytes(10) + bytes(64)
    return {
        "lacp": pad(bytes.fromhex("0180c2000002") + src + b"\x88\x09\x01\x01" + b"LACP-marker" + bytes(100), 124),
        "lldp": pad(bytes.fromhex("0180c200000e") + src + b"\x88\xcc" + bytes.fromhex("020704") + src
                    + bytes.fromhex("0403056574683006020078") + b"LLDP" + bytes(2)),
        "stp": pad(bytes.fromhex("0180c2000000") + src + (38).to_bytes(2, "big") + bytes.fromhex("424203")
                   + bytes(4) + b"\x80\x00" + src + bytes(4) + b"STP-marker" + bytes(11)),
        "eapol": pad(bytes.fromhex("0180c2000003") + src + b"\x88\x8e\x01\x01\x00\x00" + b"EAPOL-start"),
        "dot1q": pad(dst + src + b"\x81\x00\x00\x0a\x08\x00" + ipv4 + b"VLAN-10"),
        "qinq": pad(dst + src + b"\x88\xa8\x00\x64\x81\x00\x00\x0a\x08\x00" + ipv4 + b"QinQ"),
        "mpls": pad(dst + src + b"\x88\x47" + bytes.fromhex("000101ff") + ipv4 + b"MPLS"),
        "broadcast": marker_frame(b"\xff" * 6, src, b"broadcast"),
        "multicast": marker_frame(bytes.fromhex("01005e010203"), src, b"multicast"),
        "unicast": marker_frame(dst, src, b"unicast"),
        "jumbo": marker_frame(dst, src, b"jumbo", size=9014),
    }


def test_every_frame_crosses_ports_byte_identical(lab, make_hosts):
    every_frame_crosses_ports_byte_identical(lab, make_hosts)


def every_frame_crosses_ports_byte_identical(lab, make_hosts, datapath: str | None = None):
    """Two hosts, a VM behind a port on each, an MTU-9000 vnet with no bridge: every
    frame of the matrix arrives byte for byte; a pause frame does not, and is counted."""
    hosts = make_hosts(2, datapath=datapath)
    vms = [port_vm(lab, h, f"m{i}", f"10.97.0.{i + 1}/24", mtu=9000) for i, h in enumerate(hosts)]
    for h, vm in zip(hosts, vms):
        h.vn("vnet-create", "--mtu", "9000", "--bridge", "none", "--port", vm.port, "97")
        ports = wait_attached(h, [vm.port])
        assert [(p["vnet"], p["ifname"]) for p in ports] == [(V97, vm.port)]
        assert Interface(vm.port, h.host.ns).mtu == 9000
    assert "vnet97" not in lab.link_names(hosts[0].host)  # (bridge none): no bridge
    src, dst = mac_bytes(vms[0].mac), mac_bytes(vms[1].mac)
    frames = matrix(src, dst)
    pause = bytes.fromhex("0180c2000001") + src + b"\x88\x08\x00\x01\xff\xff" + b"PAUSE" + bytes(41)
    barrier = marker_frame(b"\xff" * 6, src, b"barrier-after-pause")
    before = hosts[0].counters()
    with Capture(lab, vms[1], received="eth0") as cap:
        send_frames(lab, vms[0], list(frames.values()))
        got = cap.wait_for(lambda seen: all(f in seen for f in frames.values()), "the frame matrix")
        missing = [name for name, f in frames.items() if f not in got]
        assert not missing, missing
        for name in ("dot1q", "qinq", "mpls"):  # once each, and never without a tag
            assert [f for f in got if f.endswith(frames[name][-7:])] == [frames[name]], name
        send_frames(lab, vms[0], [pause, barrier])
        got = cap.wait_for(lambda seen: barrier in seen, "the frame sent after the pause frame")
        assert not any(f[12:14] == b"\x88\x08" for f in got), "a pause frame crossed"
    hosts[0].wait_counters(before, {"drop:pause-frame": 1})
    assert hosts[0].counters().get("drop:pause-frame", 0) - before.get("drop:pause-frame", 0) == 1
    ports = {p["ifname"]: p for p in hosts[0].vn_json("ports")}
    assert ports[vms[0].port]["rx_packets"] >= len(frames)


def test_ports_switch_locally(lab, make_hosts):
    ports_switch_locally(lab, make_hosts)


def ports_switch_locally(lab, make_hosts, datapath: str | None = None):
    """Three ports of one vnet on one host: a unicast between two of them reaches the
    one it is for, not the third, and does not leave the host; a broadcast reaches
    both others and the network."""
    hosts = make_hosts(2, datapath=datapath)
    a, b = hosts
    vms = [port_vm(lab, a, f"l{i}", f"10.97.0.{i + 1}/24") for i in range(3)]
    far = port_vm(lab, b, "lf", "10.97.0.9/24")
    a.vn("vnet-create", "97", *(x for vm in vms for x in ("--port", vm.port)))
    b.vn("vnet-create", "--port", far.port, "97")
    wait_attached(a, [vm.port for vm in vms])
    wait_attached(b, [far.port])
    lab.wait_ping(vms[0], vms[1].ip, timeout=DEADLINE)  # both learned on their ports
    lab.wait_ping(vms[0], far.ip, timeout=DEADLINE)
    src, dst = mac_bytes(vms[0].mac), mac_bytes(vms[1].mac)
    unicast = marker_frame(dst, src, b"local-unicast-to-l1")
    barrier = marker_frame(b"\xff" * 6, src, b"barrier-after-unicast")
    with Capture(lab, vms[1], received="eth0") as to_l1, Capture(lab, vms[2], received="eth0") as to_l2, \
            Capture(lab, far, received="eth0") as to_far, Capture(lab, "sw") as wire:
        send_frames(lab, vms[0], [unicast, barrier])
        to_l1.wait_for(lambda seen: unicast in seen and barrier in seen, "the unicast and broadcast at l1")
        for cap, where in ((to_l2, "the third port"), (to_far, "the other host")):
            seen = cap.wait_for(lambda seen: barrier in seen, f"the broadcast at {where}")
            assert unicast not in seen, f"the local unicast reached {where}"
        seen = wire.wait_for(lambda seen: any(b"barrier-after-unicast" in f for f in seen),
                             "the broadcast on the underlay")
        assert not any(b"local-unicast-to-l1" in f for f in seen), "the local unicast left the host"


@pytest.mark.parametrize("encapsulation", ["udp", "etherip"])
def test_jumbo_ping_with_df(lab, make_hosts, encapsulation):
    jumbo_ping_with_df(lab, make_hosts, encapsulation)


def jumbo_ping_with_df(lab, make_hosts, encapsulation: str, datapath: str | None = None):
    """An MTU-9000 vnet on a 1500-byte underlay: a 9000-byte IP packet with DF crosses
    (the outer packets are fragmented), on both encapsulations."""
    hosts = make_hosts(2, datapath=datapath)
    vms = [port_vm(lab, h, f"j{i}", f"10.97.0.{i + 1}/24", mtu=9000) for i, h in enumerate(hosts)]
    for h, vm in zip(hosts, vms):
        h.vn("vnet-create", "-e", encapsulation, "--mtu", "9000", "--port", vm.port, "97")
        wait_attached(h, [vm.port])
        assert Interface("vnet97", h.host.ns).mtu == 9000 and Interface("vnif97", h.host.ns).mtu == 9000
    lab.wait_ping(vms[0], vms[1].ip, timeout=DEADLINE)
    cp = lab.run(vms[0], ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "5", "-w", "30", "-s", "8972",
                          "-M", "do", vms[1].ip], timeout=40)
    r = parse_ping(cp.stdout + cp.stderr, 3)
    assert r.received == 3 and r.duplicates == 0, r.output


def test_port_follows_its_interface(lab, make_hosts):
    port_follows_its_interface(lab, make_hosts)


def port_follows_its_interface(lab, make_hosts, datapath: str | None = None):
    """A container restart (its veth deleted and made again with the same name) and a
    datapath killed and restarted: traffic resumes with no command."""
    hosts = make_hosts(2, datapath=datapath)
    vms = [port_vm(lab, h, f"r{i}", f"10.97.0.{i + 1}/24") for i, h in enumerate(hosts)]
    for h, vm in zip(hosts, vms):
        h.vn("vnet-create", "--port", vm.port, "97")
        wait_attached(h, [vm.port])
    lab.wait_ping(vms[0], vms[1].ip, timeout=DEADLINE)
    lab.remove_link(vms[1].link)
    deadline = time.monotonic() + DEADLINE
    while hosts[1].vn_json("ports")[0]["state"] != "waiting":
        assert time.monotonic() < deadline, "the port did not wait for its interface"
        time.sleep(0.1)
    started = time.monotonic()
    lab.move_vm(vms[1], hosts[1].host, None, announce=False)
    attached = wait_attached(hosts[1], [vms[1].port])[0]
    took = time.monotonic() - started
    print(f"port attached again {took:.2f} s after its interface came back")
    assert attached["ifindex"] == _link(lab, hosts[1], vms[1].port)["ifindex"]
    # Re-attached by the datapath alone, it is isolated as `vn port-add` leaves a port:
    # no IPv6 address of the host's on it, so the host sends no DAD, MLD or RS there.
    out = lab.run(hosts[1].host, ["ip", "-6", "-o", "addr", "show", "dev", vms[1].port], check=True).stdout
    assert not out.strip(), f"the host has IPv6 on its port: {out}"
    lab.wait_ping(vms[0], vms[1].ip, timeout=DEADLINE)
    print(f"ping resumed {time.monotonic() - started:.2f} s after the interface came back")
    if hosts[1].datapath == "vnetd":
        hosts[1].kill()
        hosts[1].start()
        assert wait_attached(hosts[1], [vms[1].port])
        lab.wait_ping(vms[0], vms[1].ip, timeout=DEADLINE)


def test_bad_port_input_leaves_nothing(lab, make_hosts):
    bad_port_input_leaves_nothing(lab, make_hosts)


def bad_port_input_leaves_nothing(lab, make_hosts, datapath: str | None = None):
    """A port already in a vnet, an interface with a master, an MTU out of range, a
    port-del of an unknown port: clear errors, and neither the state nor the datapath
    changed."""
    (h,) = make_hosts(1, datapath=datapath)
    vm = port_vm(lab, h, "x0", "10.97.0.1/24")
    h.vn("vnet-create", "--port", vm.port, "97")
    h.vn("vnet-create", "98")
    wait_attached(h, [vm.port])

    def unchanged() -> None:
        assert [(p["vnet"], p["ifname"]) for p in h.vn_json("ports")] == [(V97, vm.port)]
        assert [(c["id"], c["ports"]) for c in h.vn_json("vnet-list")] == [
            (str(VnetId.parse("97")), [vm.port]), (str(VnetId.parse("98")), [])]

    cp = h.vn("port-add", "98", vm.port, check=False)
    assert cp.returncode == 1 and f"port {vm.port} is already used by vnet {V97} (as a port)" in cp.stderr, cp.stderr
    cp = h.vn("port-add", "97", vm.port, check=False)
    assert cp.returncode == 1 and f"port {vm.port} is already in vnet {V97}" in cp.stderr, cp.stderr
    cp = h.vn("port-add", "98", "vnif97", check=False)
    assert cp.returncode == 1 and "already used by vnet" in cp.stderr, cp.stderr
    enslaved = lab.vm("x1", h.host, "vnet98", "10.98.0.1/24")
    cp = h.vn("port-add", "98", enslaved.port, check=False)
    assert cp.returncode == 1 and f"port {enslaved.port}: the interface is enslaved to vnet98" in cp.stderr, cp.stderr
    cp = h.vn("port-add", "98", "eth0", check=False)
    assert cp.returncode == 1 and "port eth0: the interface has IPv4 addresses" in cp.stderr, cp.stderr
    cp = h.vn("port-del", "98", "nosuch0", check=False)
    assert cp.returncode == 1 and "has no port nosuch0" in cp.stderr, cp.stderr
    cp = h.vn("vnet-create", "--mtu", "65001", "99", check=False)
    assert cp.returncode == 1 and "field 'mtu': 65001 is out of range" in cp.stderr, cp.stderr
    cp = h.vn("vnet-create", "--port", enslaved.port, "99", check=False)
    assert cp.returncode == 1 and "enslaved to vnet98" in cp.stderr, cp.stderr
    assert "vnif99" not in lab.link_names(h.host) and "vnet99" not in lab.link_names(h.host)
    unchanged()
    # A port that waits, then goes: nothing of it stays.
    h.vn("port-add", "98", "later0")
    assert {p["ifname"]: p["state"] for p in h.vn_json("ports")} == {vm.port: "attached", "later0": "waiting"}
    h.vn("port-del", "98", "later0")
    unchanged()
    # Deleting the vnet leaves the interface, no longer promiscuous.
    h.vn("vnet-delete", "97")
    assert Interface(vm.port, h.host.ns).exists()
    assert _promiscuity(lab, h, vm.port) == 0


def _link(lab, h, ifname: str) -> dict:
    return json.loads(lab.run(h.host, ["ip", "-d", "-j", "link", "show", "dev", ifname], check=True).stdout)[0]


def _promiscuity(lab, h, ifname: str) -> int:
    return _link(lab, h, ifname)["promiscuity"]


def test_host_sends_nothing_into_a_port(lab, make_hosts):
    host_sends_nothing_into_a_port(lab, make_hosts)


def host_sends_nothing_into_a_port(lab, make_hosts, datapath: str | None = None):
    """A VM behind a port asks for the host's own addresses (ARP) and pings the far
    VM: nothing comes from the host's stack (no frame from the port's own MAC, no ARP
    answer), while the far VM answers."""
    hosts = make_hosts(2, datapath=datapath)
    vms = [port_vm(lab, h, f"i{i}", f"10.0.0.{i + 50}/24") for i, h in enumerate(hosts)]
    for h, vm in zip(hosts, vms):
        h.vn("vnet-create", "--port", vm.port, "97")
        wait_attached(h, [vm.port])
    port_mac = mac_bytes(Interface(vms[0].port, hosts[0].host.ns).mac)
    src = mac_bytes(vms[0].mac)
    with Capture(lab, vms[0], received="eth0") as cap:
        # who-has 10.0.0.1 (the host's underlay address) tell 10.0.0.50
        arp = (b"\xff" * 6 + src + b"\x08\x06" + bytes.fromhex("0001080006040001") + src
               + bytes([10, 0, 0, 50]) + bytes(6) + bytes([10, 0, 0, 1]) + bytes(18))
        send_frames(lab, vms[0], [arp, arp])
        lab.wait_ping(vms[0], vms[1].ip, timeout=DEADLINE)  # the far VM answers through the port
        seen = cap.snapshot()
    assert any(f[6:12] == mac_bytes(vms[1].mac) for f in seen)
    from_host = [f.hex() for f in seen if f[6:12] == port_mac]
    assert not from_host, f"the host sent into its port: {from_host[:3]}"
    answers = [f for f in seen if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[28:32] == bytes([10, 0, 0, 1])]
    assert not answers, "the host answered ARP on its port"

