"""vnetd across simulated hosts: namespaces as hosts, a bridge as the underlay switch,
namespaces with a veth on the vnet bridge as VMs.  Needs root; every test's lab is
torn down by the `lab` fixture even when the test fails."""
from __future__ import annotations

import ipaddress
import re
import signal
import socket
import time

import pytest
from conftest import EXAMPLES, needs_root

from lab.capture import Capture, icmpv6_type, ipv4_payloads
from lab.traffic import send_datagrams
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire

pytestmark = [needs_root, pytest.mark.root]


def create(hosts, *args):
    for h in hosts:
        h.vn("vnet-create", *args)


def test_vnets_reach_across_hosts_and_stay_isolated(lab, make_hosts):
    hosts = make_hosts(3)
    create(hosts, str(EXAMPLES / "vnet97.sxp"))
    create(hosts, str(EXAMPLES / "vnet98.sxp"))
    vms = [lab.vm(f"a{i}", h.host, "vnet97", f"10.97.0.{i + 1}/24") for i, h in enumerate(hosts)]
    # Same IP subnet on purpose: only the vnet boundary separates them.
    intruder = lab.vm("x", hosts[1].host, "vnet98", "10.97.0.99/24")
    other98 = lab.vm("y", hosts[2].host, "vnet98", "10.97.0.98/24")
    for src in vms:
        for dst in vms:
            if src is not dst:
                r = lab.ping(src, dst.ip, count=2)
                assert r.received == 2 and r.duplicates == 0, r.output
    assert lab.ping(intruder, other98.ip, count=2).received == 2
    for dst in vms:
        assert lab.ping(intruder, dst.ip, count=2, timeout=3).received == 0
    assert lab.ping(vms[0], intruder.ip, count=2, timeout=3).received == 0
    # The remote VMs were learned at the right hosts.
    on97 = hosts[0].varp_table("97")
    assert on97[vms[1].mac] == hosts[1].ip and on97[vms[2].mac] == hosts[2].ip
    assert intruder.mac not in on97 and other98.mac not in on97


def test_raw_etherip_vnet(lab, make_hosts):
    hosts = make_hosts(2)
    create(hosts, "-e", "etherip", "-b", "br5", "-v", "vnif5", "5")
    a = lab.vm("a", hosts[0].host, "br5", "10.5.0.1/24")
    b = lab.vm("b", hosts[1].host, "br5", "10.5.0.2/24")
    r = lab.ping(a, b.ip, count=3)
    assert r.received == 3 and r.duplicates == 0, r.output
    assert hosts[1].counters()["etherip-received"] >= 3
    assert hosts[1].counters().get("udp-received", 0) < hosts[1].counters()["etherip-received"]
    vnets = hosts[0].vn_json("vnets")
    assert vnets[0]["header"] == 52 and vnets[0]["encapsulation"] == "etherip"


def test_underlay_carries_only_encapsulated_frames(lab, make_hosts):
    hosts = make_hosts(2)
    create(hosts, str(EXAMPLES / "vnet97.sxp"))
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    b6 = f"{b.eth0.link_local()}%eth0"
    with Capture(lab, lab.nodes["sw"]) as cap:
        r = lab.ping(a, b.ip, count=5, interval=0.2)
        assert r.received == 5, r.output
        r = lab.ping(a, b6, count=5, interval=0.2)
        assert r.received == 5, r.output
        # 5 requests and 5 replies of each, each once on the underlay, encapsulated.
        frames = cap.wait_for(lambda fs: len(inner_frames(fs, ICMP_ECHO)) >= 10
                              and len(inner_frames(fs, ICMPV6_ECHO)) >= 10, "the pings in UDP to port 1798")
    vm_macs = {bytes.fromhex(m.replace(":", "")) for m in (a.mac, b.mac)}
    vm_ips = {socket.inet_aton(ip) for ip in (a.ip, b.ip)}
    vm_ipv6 = {ipaddress.IPv6Interface(x).ip.packed for vm in (a, b) for x in vm.eth0.ipv6_addresses}
    # The hosts' own IPv6 on their NICs (neighbour and router discovery, MLD) is theirs.
    host_macs = {bytes.fromhex(h.host.mac.replace(":", "")) for h in hosts}
    host_ipv6 = {bytes(16)} | {ipaddress.IPv6Interface(x).ip.packed for h in hosts
                               for x in h.host.eth0.ipv6_addresses}
    encapsulated = 0
    for f in frames:
        assert f[0:6] not in vm_macs and f[6:12] not in vm_macs, f.hex()
        ethertype = int.from_bytes(f[12:14], "big")
        if ethertype == 0x0806:  # underlay ARP only
            assert f[28:32] not in vm_ips and f[38:42] not in vm_ips, f.hex()
            continue
        if ethertype == 0x86DD:
            assert f[22:38] not in vm_ipv6 and f[38:54] not in vm_ipv6, f.hex()
            assert f[6:12] in host_macs and f[22:38] in host_ipv6, f"IPv6 not from a host: {f.hex()}"
            assert icmpv6_type(f[14:]) in HOST_ICMPV6, f"IPv6 of a host not its own control: {f.hex()}"
            continue
        assert ethertype == 0x0800, f"non-IP frame on the underlay: {f.hex()}"
        ip = f[14:]
        proto = ip[9]
        assert ip[12:16] not in vm_ips and ip[16:20] not in vm_ips, f.hex()
        if proto == 2:  # IGMP membership of the vnet group
            continue
        assert proto in (17, 97), f.hex()
        if proto == 17:
            ihl = (ip[0] & 15) * 4
            assert ip[ihl:ihl + 4] == b"\x07\x06\x07\x06", f"UDP not on port 1798: {f.hex()}"
        encapsulated += 1
    assert encapsulated >= 20  # 5 requests + 5 replies at least, of IPv4 and of IPv6


#: ICMPv6 a host sends on its own NIC: MLD (130-132, 143), router and neighbour
#: discovery (133-136).
HOST_ICMPV6 = {130, 131, 132, 133, 134, 135, 136, 143}
ICMP_ECHO = (0x0800, lambda ip: ip[9] == 1 and ip[(ip[0] & 15) * 4] in (0, 8))
ICMPV6_ECHO = (0x86DD, lambda ip: icmpv6_type(ip) in (128, 129))


def inner_frames(frames: list[bytes], kind) -> list[bytes]:
    """The frames of `kind` (ethertype, test of the packet) carried in UDP to port 1798."""
    ethertype, test = kind
    inner = [p[len(wire.VUDP_HEADER) + wire.ETHERIP_HEADER_LEN:] for _, _, p in ipv4_payloads(frames)
             if p.startswith(wire.VUDP_HEADER)]
    return [f for f in inner if int.from_bytes(f[12:14], "big") == ethertype and test(f[14:])]


def test_peers_join_subnets_without_duplicates(lab, make_hosts):
    sw1, sw2 = lab.switch("s1"), lab.switch("s2")
    lab.router("r", [(sw1, "10.0.1.254/24"), (sw2, "10.0.2.254/24")])
    left = make_hosts(2, switch=sw1, subnet="10.0.1", gateway="10.0.1.254")
    right = make_hosts(1, switch=sw2, subnet="10.0.2", gateway="10.0.2.254")
    hosts = left + right
    create(hosts, str(EXAMPLES / "vnet97.sxp"))
    vms = [lab.vm(f"m{i}", h.host, "vnet97", f"10.97.0.{i + 1}/24") for i, h in enumerate(hosts)]
    # Without peers, multicast (ARP) stays in its subnet.
    assert lab.ping(vms[1], vms[2].ip, count=2, timeout=3).received == 0
    assert lab.ping(vms[0], vms[1].ip, count=2).received == 2
    left[0].vn("peer-add", right[0].ip)
    right[0].vn("peer-add", left[0].ip)
    for src, dst in [(vms[1], vms[2]), (vms[2], vms[0]), (vms[0], vms[2]), (vms[2], vms[1])]:
        r = lab.ping(src, dst.ip, count=4)
        assert r.received == 4 and r.duplicates == 0, r.output
    # A broadcast ping reaches every VM exactly once: no duplicated or looping frames.
    lab.sysctl(vms[0], {"net.ipv4.icmp_echo_ignore_broadcasts": "0"})
    lab.sysctl(vms[1], {"net.ipv4.icmp_echo_ignore_broadcasts": "0"})
    lab.sysctl(vms[2], {"net.ipv4.icmp_echo_ignore_broadcasts": "0"})
    out = lab.run(vms[2], ["ping", "-b", "-c", "6", "-i", "0.3", "-w", "4", "10.97.0.255"]).stdout
    replies = re.findall(r"from ([0-9.]+): icmp_seq=(\d+)", out)
    assert len(replies) == len(set(replies)), f"a reply arrived twice:\n{out}"
    assert {vms[0].ip, vms[1].ip} <= {ip for ip, _ in replies}, out
    peers = left[0].vn_json("peers")
    assert peers[0]["addr"] == right[0].ip and peers[0]["rx_packets"] > 0 and peers[0]["tx_packets"] > 0


def test_misconfigured_peers_do_not_loop(lab, make_hosts):
    """Two forwarders on one subnet (the original looped); relayed duplicates are dropped."""
    sw1, sw2 = lab.switch("s1"), lab.switch("s2")
    lab.router("r", [(sw1, "10.0.1.254/24"), (sw2, "10.0.2.254/24")])
    left = make_hosts(2, switch=sw1, subnet="10.0.1", gateway="10.0.1.254")
    right = make_hosts(2, switch=sw2, subnet="10.0.2", gateway="10.0.2.254")
    hosts = left + right
    create(hosts, str(EXAMPLES / "vnet97.sxp"))
    for h in left:
        for p in right:
            h.vn("peer-add", p.ip)
            p.vn("peer-add", h.ip)
    vms = [lab.vm(f"m{i}", h.host, "vnet97", f"10.97.0.{i + 1}/24") for i, h in enumerate(hosts)]
    for src, dst in [(vms[0], vms[3]), (vms[3], vms[1]), (vms[2], vms[0])]:
        r = lab.ping(src, dst.ip, count=3)
        assert r.received == 3 and r.duplicates == 0, r.output
    # Traffic stops: the VMs are unplugged (with IPv6 on, they would go on soliciting
    # routers and reporting multicast memberships for a while).
    for vm in vms:
        vm.link.set_up(False)
    before = [h.counters().get("floods", 0) + h.counters().get("forwards-received", 0) for h in hosts]
    time.sleep(2)
    after = [h.counters().get("floods", 0) + h.counters().get("forwards-received", 0) for h in hosts]
    assert after == before, "multicast kept circulating after traffic stopped"
    assert sum(h.counters().get("drop:duplicate", 0) for h in hosts) > 0


def test_moved_vm_is_found_again_quickly(lab, make_hosts):
    hosts = make_hosts(3)
    create(hosts, str(EXAMPLES / "vnet97.sxp"))
    client = lab.vm("c", hosts[2].host, "vnet97", "10.97.0.3/24")
    vm = lab.vm("m", hosts[0].host, "vnet97", "10.97.0.1/24")
    assert lab.ping(client, vm.ip, count=2).received == 2
    lab.move_vm(vm, hosts[1].host, "vnet97")
    waited = lab.wait_ping(client, vm.ip, timeout=5)
    assert waited < 5
    varp = hosts[2].varp_table()
    assert varp[vm.mac] == hosts[1].ip
    assert vm.mac not in hosts[0].vif_macs(), "old host still claims the moved MAC"


def test_vnetd_kill_and_restart_restores_without_touching_others(lab, make_hosts):
    hosts = make_hosts(3)
    create(hosts, str(EXAMPLES / "vnet97.sxp"))
    hosts[1].vn("peer-add", "10.0.0.3")
    vms = [lab.vm(f"a{i}", h.host, "vnet97", f"10.97.0.{i + 1}/24") for i, h in enumerate(hosts)]
    assert lab.ping(vms[0], vms[1].ip, count=2).received == 2
    others = [hosts[0].proc.pid, hosts[2].proc.pid]
    hosts[1].kill(signal.SIGKILL)
    assert lab.ping(vms[0], vms[1].ip, count=1, timeout=2).received == 0
    hosts[1].start()
    lab.wait_ping(vms[0], vms[1].ip, timeout=10)
    r = lab.ping(vms[2], vms[1].ip, count=3)
    assert r.received == 3 and r.duplicates == 0
    assert [hosts[0].proc.pid, hosts[2].proc.pid] == others
    assert all(h.proc.poll() is None for h in hosts)
    assert hosts[1].vn_json("peers")[0]["addr"] == "10.0.0.3"


def test_malformed_packets_are_dropped_and_counted(lab, make_hosts):
    sw = lab.switch("sw")
    hosts = make_hosts(2, switch=sw)
    attacker = lab.host("x", sw, "10.0.0.66/24")
    create(hosts, str(EXAMPLES / "vnet97.sxp"))
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    assert lab.ping(a, b.ip, count=2).received == 2
    vid = VnetId.parse("97").packed
    frame = bytes.fromhex("ffffffffffff" "aa0000000001" "0806") + bytes(28)
    import random
    rnd = random.Random(1)
    bad = {
        "short": [b"\x00", b"\x00\x02\x00"],
        "bad-message-id": [b"\x00\x09\x00\x00" + bytes(40)] + [b"\x7f" + rnd.randbytes(60) for _ in range(5)],
        "short ": [wire.VUDP_HEADER + b"\x00\x40" + vid[:10]],
        "bad-version": [wire.VUDP_HEADER + b"\x00\x30" + vid + frame],
        "unknown-vnet": [wire.vudp_prefix(VnetId.parse("1234").packed) + frame],
        "not-a-peer": [wire.VFWD_HEADER + wire.vfwd_inner_udp(bytes(4), socket.inet_aton("224.10.0.1"), 60)
                       + wire.vudp_prefix(vid) + frame],
    }
    before = hosts[1].counters()
    send_datagrams(lab, attacker, hosts[1].ip, [p for ps in bad.values() for p in ps])
    after = hosts[1].wait_counters(before, {"drop:short": 3, "drop:bad-message-id": 6, "drop:bad-version": 1,
                                            "drop:unknown-vnet": 1, "drop:not-a-peer": 1})
    assert after.get("drop:short", 0) - before.get("drop:short", 0) == 3
    assert after.get("drop:bad-message-id", 0) - before.get("drop:bad-message-id", 0) == 6
    for reason in ("bad-version", "unknown-vnet", "not-a-peer"):
        assert after.get("drop:" + reason, 0) - before.get("drop:" + reason, 0) == 1, (reason, after)
    # A flood of random bytes does not stop it.
    # Announces naming no host (0.0.0.0, loopback) would loop frames back: ignored.
    ghost = bytes.fromhex("aa0000000099")
    before = hosts[1].counters()
    send_datagrams(lab, attacker, hosts[1].ip, [wire.pack_varp(wire.VARP_ANNOUNCE, vid, ghost, a)
                                                for a in ("0.0.0.0", "127.0.0.1", "255.255.255.255")])
    hosts[1].wait_counters(before, {"udp-received": 3})
    varp = hosts[1].varp_table()
    assert "aa:00:00:00:00:99" not in varp, varp
    send_datagrams(lab, attacker, hosts[1].ip, [rnd.randbytes(rnd.randrange(0, 1400)) for _ in range(300)])
    r = lab.ping(a, b.ip, count=3)
    assert r.received == 3, r.output
    assert hosts[1].proc is None or hosts[1].proc.poll() is None
    assert hosts[1].vn("vnets").returncode == 0
