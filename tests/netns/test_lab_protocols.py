"""Lab links carry the control protocols of real network gear, spoken by programs we
did not write: lldpd's LLDP, and the kernel bridge's spanning tree across a loop of
two vnets (doc/ports.md).  Each VM reaches its vnet through a port, with no bridge
of ours in between.  Needs root and lldpd (setup.sh installs it).

Written for both datapaths: tests/kernel/in_guest/test_kmod_scenarios.py runs them
with the kernel module."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from conftest import needs_root

from lab.capture import DEADLINE, Capture
from lab.lab import Lab
from lab.nodes import VM
from lab.traffic import send_frames

pytestmark = [needs_root, pytest.mark.root]


def port_vm(lab: Lab, name: str, host, address: str) -> VM:
    """A VM whose eth0 is cabled to an interface `p<name>` of `host` on no bridge:
    the interface a lab user makes a vnet's port."""
    return lab.vm(name, host, "", address, port=f"p{name}", plugged=False)


def lldp_neighbors(lab: Lab, vm: VM, sock: str) -> list[str]:
    """The system descriptions lldpd in `vm` has learned."""
    out = lab.run(vm, ["lldpcli", "-u", sock, "-f", "json", "show", "neighbors"], check=True).stdout
    found = json.loads(out).get("lldp") or {}
    intfs = found.get("interface") or {}
    # lldpcli gives one interface as an object and several as a list of objects.
    entries = intfs if isinstance(intfs, list) else [intfs]
    descrs = []
    for entry in entries:
        for detail in entry.values():
            for chassis in (detail.get("chassis") or {}).values():
                if isinstance(chassis, dict) and "descr" in chassis:
                    descrs.append(chassis["descr"])
    return descrs


@pytest.fixture
def lldpd_dir():
    """A directory for lldpd's control sockets: lldpd creates its socket after giving
    up root, so pytest's own (mode 0700) temporary directories will not do."""
    path = Path(tempfile.mkdtemp(prefix="vnet-lldpd-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_lldpd_on_two_hosts_sees_its_neighbour_through_ports(lab, make_hosts, lldpd_dir):
    """lldpd in a VM on each of two hosts, each VM behind a port of vnet 97: each
    lists the other as its neighbour.  LLDP goes to 01:80:c2:00:00:0e, a group a
    standards-conforming bridge must not forward."""
    h1, h2 = make_hosts(2)
    vms = []
    for h, name, ip in ((h1, "a", "10.97.0.1/24"), (h2, "b", "10.97.0.2/24")):
        h.vn("vnet-create", "97", "--bridge", "none")
        vm = port_vm(lab, name, h.host, ip)
        h.vn("port-add", "97", f"p{name}")
        vms.append(vm)
    a, b = vms
    lab.wait_ping(a, b.ip, timeout=30)
    socks = {}
    for vm in vms:
        socks[vm.name] = str(lldpd_dir / f"{vm.name}.socket")
        lab.popen(vm, ["lldpd", "-d", "-u", socks[vm.name], "-I", "eth0", "-S", f"vnet-test-{vm.name}"])
    deadline = time.monotonic() + DEADLINE
    seen: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        for vm in vms:
            # lldpd starts paused and runs lldpcli to resume itself, but does not look
            # at how that ended: under load it can stay paused, neither sending nor
            # receiving (a guest run saw that).  Resuming again is harmless.  lldpd
            # may not have its socket yet either; ask again until the deadline.
            resumed = lab.run(vm, ["lldpcli", "-u", socks[vm.name], "resume"])
            got = lab.run(vm, ["lldpcli", "-u", socks[vm.name], "update"])
            if resumed.returncode == 0 and got.returncode == 0:
                seen[vm.name] = lldp_neighbors(lab, vm, socks[vm.name])
        if "vnet-test-b" in seen.get("a", []) and "vnet-test-a" in seen.get("b", []):
            break
        time.sleep(0.5)
    stats = {vm.name: lab.run(vm, ["lldpcli", "-u", socks[vm.name], "show", "statistics"]).stdout
             for vm in vms}
    assert seen.get("a") == ["vnet-test-b"], (seen, stats)
    assert seen.get("b") == ["vnet-test-a"], (seen, stats)


def switch_vm(lab: Lab, name: str, host, address: str) -> VM:
    """A VM that is a switch: a bridge with spanning tree on (fast timers), its two
    ports eth0 and eth1 cabled to interfaces `p<name>0`/`p<name>1` of `host` (for the
    caller to make vnet ports).  The bridge carries the VM's address."""
    vm = lab.vm(name, host, "", address, port=f"p{name}0", plugged=False)
    lab.nic(vm, host, "eth1", f"p{name}1")
    for cmd in (["ip", "addr", "flush", "dev", "eth0"],
                ["ip", "link", "add", "br0", "type", "bridge", "stp_state", "1",
                 "forward_delay", "200", "hello_time", "100", "max_age", "600"],
                ["ip", "link", "set", "eth0", "master", "br0"],
                ["ip", "link", "set", "eth1", "master", "br0"],
                ["ip", "link", "set", "br0", "up"],
                ["ip", "addr", "add", address, "dev", "br0"]):
        lab.run(vm, cmd, check=True)
    return vm


def stp_states(lab: Lab, vm: VM) -> dict[str, str]:
    out = lab.run(vm, ["bridge", "-j", "link", "show"], check=True).stdout
    return {p["ifname"]: p.get("state", "?") for p in json.loads(out)}


def test_spanning_tree_blocks_a_loop_of_two_vnets(lab, make_hosts):
    """Two VM switches on two hosts, joined by vnets 97 and 98 (a loop): the kernel
    bridge's spanning tree puts exactly one of the four ports in blocking, the
    switches reach each other, and a broadcast does not storm.  BPDUs go to
    01:80:c2:00:00:00, which a Linux bridge in the path would eat."""
    h1, h2 = make_hosts(2)
    for h in (h1, h2):
        for vid in ("97", "98"):
            h.vn("vnet-create", vid, "--bridge", "none")
    s1 = switch_vm(lab, "s1", h1.host, "10.99.0.1/24")
    s2 = switch_vm(lab, "s2", h2.host, "10.99.0.2/24")
    for h, vm in ((h1, s1), (h2, s2)):
        h.vn("port-add", "97", f"p{vm.name}0")
        h.vn("port-add", "98", f"p{vm.name}1")
    deadline = time.monotonic() + 2 * DEADLINE
    while time.monotonic() < deadline:
        states = {vm.name: stp_states(lab, vm) for vm in (s1, s2)}
        flat = [s for ports in states.values() for s in ports.values()]
        if sorted(flat) == ["blocking", "forwarding", "forwarding", "forwarding"]:
            break
        time.sleep(0.5)
    assert sorted(flat) == ["blocking", "forwarding", "forwarding", "forwarding"], states
    lab.wait_ping(s1, s2.ip, timeout=30)
    # One broadcast (an ARP request for an address nobody has) from s1: it reaches
    # s2 at most once per link (the blocking port still sees a frame arrive, and
    # drops it); in a loop without spanning tree it would come round for ever.
    with Capture(lab, s2, bridge="br0") as at_s2:
        target = bytes([10, 99, 0, 77])
        mac = bytes.fromhex(s1.mac.replace(":", ""))
        arp = (b"\xff" * 6 + mac + b"\x08\x06" + bytes.fromhex("0001080006040001") + mac
               + bytes([10, 99, 0, 1]) + bytes(6) + target)
        send_frames(lab, s1, "br0", [arp])
        at_s2.wait_for(lambda fs: any(f[12:14] == b"\x08\x06" and f[38:42] == target for f in fs),
                       "the broadcast at s2")
        # A storm is thousands of copies a second; 5 s shows it whatever the load.
        time.sleep(5)
        copies = [f for f in at_s2.snapshot() if f[12:14] == b"\x08\x06" and f[38:42] == target]
    assert 1 <= len(copies) <= 2, f"{len(copies)} copies of one broadcast in 5 s: a storm"
