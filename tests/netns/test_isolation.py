"""The host is not on its vnets unless an admin puts it there (doc/attach.md), probed
from a VM with IPv6 on in hosts and VMs, as on real machines: nothing of the hosts
answers the VM over IPv6 (all-nodes ping, neighbour solicitation, ping and TCP to
every host address) or IPv4 (ARP, ping, TCP), takes its router advertisement, or sends
anything into the vnet from a vnet bridge or device.  An admin who gives the bridge an
address is on the vnet through it.  Needs root; runs unchanged with the kernel module
in the test guest (tests/kernel/in_guest/test_kmod_isolation.py)."""
from __future__ import annotations

import ipaddress
import json
import logging
import re
import subprocess
import time

import pytest
from conftest import needs_root

from lab.capture import Capture, icmpv6_type
from lab.lab import Lab
from lab.links import Interface
from lab.procs import script_argv

pytestmark = [needs_root, pytest.mark.root]

PORT = 7797
#: The prefix a VM advertises as a router would.
RA_PREFIX = ipaddress.ip_network("fd97:0:0:1::/64")
#: How long the probe waits for what must happen (the other VMs answering, a VM
#: taking the advertised prefix): generous, the test guest is slow.
DEADLINE = 60.0

#: A service of the host's own stack on every address, IPv6 and IPv4.
SERVICE = r"""
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""

#: TCP connections to every address at once (a failed neighbour or ARP resolution
#: takes seconds); one "address outcome" line each.  "refused" is an answer too.
CONNECT = r"""
import concurrent.futures, socket, sys
def connect(addr):
    try:
        socket.create_connection((addr, int(sys.argv[1])), timeout=30).close()
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "none"
with concurrent.futures.ThreadPoolExecutor(len(sys.argv) - 2) as pool:
    for addr, outcome in zip(sys.argv[2:], pool.map(connect, sys.argv[2:])):
        print(addr, outcome)
"""

#: A router advertisement (default router, on-link autonomous /64 prefix argv[1]) to
#: all nodes on eth0, three times; the kernel fills in the source and the checksum.
ADVERTISE = r"""
import socket, sys, time
ifindex = socket.if_nametoindex("eth0")
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
ra = bytes([134, 0, 0, 0, 64, 0]) + (1800).to_bytes(2, "big") + bytes(8)
prefix = bytes([3, 4, 64, 0xC0]) + (86400).to_bytes(4, "big") + (14400).to_bytes(4, "big") + bytes(4)
prefix += socket.inet_pton(socket.AF_INET6, sys.argv[1])
for _ in range(3):
    s.sendto(ra + prefix, ("ff02::1", 0, 0, ifindex))
    time.sleep(0.3)
"""


def addresses(lab: Lab, node) -> list[tuple[str, str]]:
    """(device, address) of every address in `node` but loopback's."""
    found = json.loads(lab.run(node, ["ip", "-j", "addr", "show"], check=True).stdout)
    return [(link["ifname"], a["local"]) for link in found if link["ifname"] != "lo"
            for a in link.get("addr_info", [])]


def wait_settled(lab: Lab, nodes) -> None:
    """Until no address in `nodes` is tentative: one that is answers nothing yet."""
    deadline = time.monotonic() + DEADLINE
    while any("tentative" in lab.run(n, ["ip", "-6", "-o", "addr"]).stdout for n in nodes):
        assert time.monotonic() < deadline, "IPv6 addresses still tentative"
        time.sleep(0.2)


def start_service(lab: Lab, node) -> None:
    proc = lab.popen(node, script_argv(SERVICE, str(PORT)), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"


def all_nodes_answers(lab: Lab, vm, others: set[str]) -> set[str]:
    """Who answers pings to ff02::1 from `vm`, pinging until all of `others` (the other
    VMs: proof that the probe sees the vnet) have."""
    seen: set[str] = set()
    deadline = time.monotonic() + DEADLINE
    while not others <= seen:
        assert time.monotonic() < deadline, f"all-nodes ping: {others - seen} never answered"
        out = lab.run(vm, ["ping", "-6", "-n", "-c", "3", "-i", "0.5", "-w", "5", "ff02::1%eth0"]).stdout
        seen |= set(re.findall(r"from ([0-9a-f:]+)(?:%\w+)?:", out))
    return seen - {vm.eth0.link_local()}


def pings(lab: Lab, vm, targets: list[str]) -> dict[str, bool]:
    """Whether each target answered one ping from `vm` (all at once)."""
    procs = {t: lab.popen(vm, ["ping", "-n", "-c", "1", "-W", "5", t], stdout=subprocess.DEVNULL)
             for t in targets}
    return {t: p.wait(60) == 0 for t, p in procs.items()}


def scoped(addr: str) -> str:
    return f"{addr}%eth0" if addr.startswith("fe80:") else addr


def describe(frame: bytes) -> str:
    """What a frame is, in a few words, for the probe's findings."""
    kind = int.from_bytes(frame[12:14], "big")
    if kind == 0x86DD:
        src, dst = (ipaddress.IPv6Address(frame[i:i + 16]) for i in (22, 38))
        return f"ICMPv6 type {icmpv6_type(frame[14:])} from {src} to {dst}"
    if kind == 0x0806:
        return f"ARP op {int.from_bytes(frame[20:22], 'big')} for {ipaddress.IPv4Address(frame[38:42])}"
    if kind == 0x0800:
        return f"IPv4 protocol {frame[23]} from {ipaddress.IPv4Address(frame[26:30])}"
    return f"ethertype {kind:#06x}"


def probe_addresses(lab: Lab, vm, control, owner: dict[str, str]) -> list[str]:
    """Ping and TCP from `vm` to every host address in `owner` (address: whose), as if
    it were on the vnet's link, and what answered; VM `control` must answer both."""
    for addr in owner:
        ip = ipaddress.ip_address(addr)
        if not ip.is_link_local:
            lab.run(vm, ["ip", "route", "add", f"{addr}/{ip.max_prefixlen}", "dev", "eth0"], check=True)
    mine = [scoped(control.eth0.link_local()), control.ip]
    targets = [scoped(x) for x in owner]
    answered = pings(lab, vm, mine + targets)
    assert all(answered[t] for t in mine), answered
    out = lab.run(vm, script_argv(CONNECT, str(PORT), *mine, *targets), timeout=120, check=True)
    outcomes = dict(line.split() for line in out.stdout.splitlines())
    assert [outcomes[t] for t in mine] == ["connected"] * 2, outcomes
    found = [f"{owner[t.split('%')[0]]}: answered a ping" for t in targets if answered[t]]
    found += [f"{owner[t.split('%')[0]]}: TCP {outcomes[t]}" for t in targets if outcomes[t] != "none"]
    neighbours = json.loads(lab.run(vm, ["ip", "-j", "neigh", "show", "dev", "eth0"], check=True).stdout)
    return found + [f"{owner[n['dst']]}: answered {'ARP' if '.' in n['dst'] else 'neighbour solicitation'} "
                    f"({n['lladdr']})" for n in neighbours if n["dst"] in owner and "lladdr" in n]


def ipv6_state(lab: Lab, node) -> list[str]:
    """`node`'s IPv6 routes (every table) and addresses, one line each."""
    routes = lab.run(node, ["ip", "-6", "route", "show", "table", "all"], check=True).stdout.splitlines()
    return routes + [f"{d} {x}" for d, x in addresses(lab, node)]


def probe_router_advertisement(lab: Lab, vm, others, hosts) -> list[str]:
    """A router advertisement from `vm`: what the hosts took from it, once the `others`
    (VMs) have taken its prefix."""
    before = {h.name: ipv6_state(lab, h) for h in hosts}
    lab.run(vm, script_argv(ADVERTISE, str(RA_PREFIX.network_address)), check=True)
    deadline = time.monotonic() + DEADLINE
    while not all(any(ipaddress.ip_address(x) in RA_PREFIX for _, x in addresses(lab, o)) for o in others):
        assert time.monotonic() < deadline, "the VMs did not take the advertised prefix"
        time.sleep(0.2)
    return [f"{h.name} took the router advertisement: {x}" for h in hosts
            for x in ipv6_state(lab, h) if x not in before[h.name]]


def sent_into_vnet(lab: Lab, frames: dict[tuple[str, str], list[bytes]]) -> list[str]:
    """What the captures (host, device) show a host's bridge or vnet device sending into
    the vnet.  A vnet device's own frames have its MAC, the VMs' frames it carries
    theirs; the bridge's, which it carries too, may have the same MAC (a bridge takes
    its lowest port's)."""
    found = []
    for (name, dev), got in frames.items():
        if dev == "vnif97":
            mac = bytes.fromhex(Interface(dev, lab.nodes[name].ns).mac.replace(":", ""))
            bridge_sent = set(frames[name, "vnet97"])
            got = [f for f in got if f[6:12] == mac and f not in bridge_sent]
        if got:
            found.append(f"{name} {dev} sent {len(got)} frames into the vnet, the first: {describe(got[0])}")
    return found


def test_nothing_of_the_hosts_answers_a_vm(lab, make_hosts):
    """The isolation probe, from VM a on h1 with VMs c (h1) and b (h2) beside it; h2
    forwards IPv6, as a hypervisor that routes for its guests does."""
    hosts = make_hosts(2)
    h1, h2 = hosts[0].host, hosts[1].host
    lab.sysctl(h2, {"net.ipv6.conf.all.forwarding": "1"})
    sent = {(h.name, dev): Capture(lab, h, sent=dev) for h in (h1, h2) for dev in ("vnet97", "vnif97")}
    try:
        for h in hosts:
            h.vn("vnet-create", "97")
        a = lab.vm("a", h1, "vnet97", "10.97.0.1/24")
        c = lab.vm("c", h1, "vnet97", "10.97.0.3/24")
        b = lab.vm("b", h2, "vnet97", "10.97.0.2/24")
        for node in (h1, h2, b):
            start_service(lab, node)
        wait_settled(lab, [h1, h2, a, b, c])
        owner = {addr: f"{h.name} {dev} {addr}" for h in (h1, h2) for dev, addr in addresses(lab, h)}
        vms = {vm.eth0.link_local() for vm in (b, c)}
        found = [f"{owner.get(x, x)}: answered the all-nodes ping"
                 for x in sorted(all_nodes_answers(lab, a, vms) - vms)]
        found += probe_addresses(lab, a, b, owner)
        found += probe_router_advertisement(lab, a, (b, c), (h1, h2))
    finally:
        frames = {where: cap.stop() for where, cap in sent.items()}
    found += sent_into_vnet(lab, frames)
    assert not found, "the hosts are on the vnet:\n" + "\n".join(found)


def test_an_admin_puts_the_host_on_a_vnet_by_giving_the_bridge_an_address(lab, make_hosts):
    """As doc/attach.md says: an IPv4 address on the bridge, and IPv6 turned on there
    with an address; the kernel still adds no link-local address of its own."""
    hosts = make_hosts(2)
    h1 = hosts[0].host
    for h in hosts:
        h.vn("vnet-create", "97")
    a = lab.vm("a", h1, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    with Capture(lab, h1, sent="vnet97") as cap:
        lab.run(h1, ["ip", "addr", "add", "10.97.0.254/24", "dev", "vnet97"], check=True)
        lab.run(h1, ["sysctl", "-qw", "net.ipv6.conf.vnet97.disable_ipv6=0"], check=True)
        lab.run(h1, ["ip", "addr", "add", "fd97::254/64", "dev", "vnet97"], check=True)
        for i, vm in enumerate((a, b), 1):
            lab.run(vm, ["ip", "addr", "add", f"fd97::{i}/64", "dev", "eth0"], check=True)
        for vm in (a, b):
            lab.wait_ping(vm, "10.97.0.254", timeout=DEADLINE)
            lab.wait_ping(vm, "fd97::254", timeout=DEADLINE)
        # The host now sends into the vnet from the bridge: its answers.
        cap.wait_for(lambda fs: any(f[12:14] == b"\x86\xdd" for f in fs), "IPv6 from the bridge")
    assert [x for d, x in addresses(lab, h1) if d == "vnet97"] == ["10.97.0.254", "fd97::254"]


def test_a_bridge_that_was_there_keeps_only_what_an_admin_gave_it(lab, make_hosts):
    """An existing bridge named for a vnet: the kernel's link-local address goes, the
    admin's addresses stay (and vnet says so), ARP and router advertisements are
    handled as on a bridge vnet makes."""
    (h,) = make_hosts(1)
    lab.run(h.host, ["ip", "link", "add", "br7", "type", "bridge"], check=True)
    lab.run(h.host, ["ip", "link", "set", "br7", "up"], check=True)
    a = lab.vm("a", h.host, "br7", "10.7.0.1/24")
    lab.run(h.host, ["ip", "addr", "add", "10.7.0.254/24", "dev", "br7"], check=True)
    lab.run(h.host, ["ip", "addr", "add", "fd07::254/64", "dev", "br7"], check=True)
    lab.run(a, ["ip", "addr", "add", "fd07::1/64", "dev", "eth0"], check=True)
    wait_settled(lab, [h.host])
    assert any(x.startswith("fe80:") for d, x in addresses(lab, h.host) if d == "br7")

    # `vn` sets up no logging, so Python's last resort prints the warning on its stderr
    # (with the module); pytest's own log handlers would keep it from there.
    vnet_log = logging.getLogger("vnet")
    vnet_log.addHandler(logging.lastResort)
    try:
        r = h.vn("vnet-create", "-b", "br7", "-v", "vnif7", "7")
    finally:
        vnet_log.removeHandler(logging.lastResort)
    said = r.stderr + (h.log.read_text() if h.datapath == "vnetd" else "")
    assert "bridge br7 keeps the addresses it was given (10.7.0.254/24, fd07::254/64)" in said, said
    assert sorted(x for d, x in addresses(lab, h.host) if d == "br7") == ["10.7.0.254", "fd07::254"]
    want = {"ipv4.conf.br7.arp_ignore": "1", "ipv6.conf.br7.accept_ra": "0", "ipv6.conf.br7.autoconf": "0",
            "ipv6.conf.br7.addr_gen_mode": "1", "ipv6.conf.br7.disable_ipv6": "0",
            "ipv6.conf.vnif7.disable_ipv6": "1"}
    assert {k: lab.run(h.host, ["sysctl", "-n", f"net.{k}"], check=True).stdout.strip() for k in want} == want
    lab.wait_ping(a, "10.7.0.254", timeout=DEADLINE)
    lab.wait_ping(a, "fd07::254", timeout=DEADLINE)
