"""The peer rule (vnet.model.peer), IPv6 refusals, name resolution, config differences
and the privilege check: the pieces the control commands are made of, without root."""
from __future__ import annotations

import pytest
from pyroute2 import IPRoute

from vnet.control.controller import Controller, PeerAddress, resolve_host
from vnet.control.datapath import Datapath
from vnet.datapath.kmod.family import VNET_MAX_PEERS
from vnet.errors import DatapathError
from vnet.host import netdev, privilege
from vnet.model.addr import AddressError, parse_ipv4
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointSpec
from vnet.model.state import StateError
from vnet.model.vnetid import VnetId
from vnet.model.peer import (
    LOOPBACK,
    MAX_PEERS,
    NOT_UNICAST,
    OWN,
    check_peer,
    check_peer_room,
    peer_problem,
)

#: The local table of a host with 192.0.2.7/24 (as `ip route show table local` has it).
LOCAL = [("127.0.0.0", 8, "local"), ("127.0.0.1", 32, "local"), ("127.255.255.255", 32, "broadcast"),
         ("192.0.2.7", 32, "local"), ("192.0.2.255", 32, "broadcast"), ("198.51.100.0", 24, "local")]


@pytest.mark.parametrize("addr, problem", [
    ("192.0.2.8", None),
    ("203.0.113.9", None),
    ("127.0.0.1", LOOPBACK),
    ("127.9.9.9", LOOPBACK),
    ("224.1.1.1", NOT_UNICAST),
    ("239.255.255.255", NOT_UNICAST),
    ("0.0.0.0", NOT_UNICAST),
    ("0.1.2.3", NOT_UNICAST),
    ("240.0.0.1", NOT_UNICAST),
    ("255.255.255.255", NOT_UNICAST),
    ("192.0.2.255", NOT_UNICAST),  # the subnet's broadcast address
    ("192.0.2.7", OWN),
    ("198.51.100.77", OWN),  # a local route covering a prefix (AnyIP): the kernel's longest match
])
def test_peer_rule(addr: str, problem: str | None) -> None:
    assert peer_problem(addr, LOCAL) == problem


def test_the_cap_on_peers_is_the_modules_and_a_known_peer_passes_it() -> None:
    assert MAX_PEERS == VNET_MAX_PEERS
    full = {f"10.1.{i // 250}.{i % 250 + 1}" for i in range(MAX_PEERS)}
    with pytest.raises(DatapathError) as err:
        check_peer_room("10.9.9.9", full, "peer-z (resolved to 10.9.9.9)")
    assert (err.value.code, err.value.message) == (
        "ENOSPC", f"cannot add peer peer-z (resolved to 10.9.9.9): a host has at most {MAX_PEERS} peers")
    check_peer_room("10.1.0.1", full)  # a change of port
    check_peer_room("10.9.9.9", set(list(full)[1:]))


def test_refusal_names_the_peer_as_given() -> None:
    with pytest.raises(DatapathError) as info:
        check_peer("127.0.0.1", LOCAL, "localhost (resolved to 127.0.0.1)")
    assert (info.value.code, info.value.message) == (
        "EINVAL", "cannot add peer localhost (resolved to 127.0.0.1): a peer must not be a loopback address")
    with pytest.raises(DatapathError, match=r"^cannot add peer 192\.0\.2\.7: a peer must not be an address "
                                            r"of this host$"):
        check_peer("192.0.2.7", LOCAL)
    check_peer("192.0.2.8", LOCAL)


def test_this_namespaces_local_table_is_read() -> None:
    with IPRoute() as ipr:
        local = netdev.local_routes(ipr)
        own = [a for _, a, _, _ in netdev.ipv4_addresses(ipr)]
    assert ("127.0.0.1", 32, "local") in local
    assert peer_problem("127.0.0.1", local) == LOOPBACK
    for addr in own:
        assert peer_problem(addr, local) == OWN


@pytest.mark.parametrize("text", ["fe80::1", "fe80::1%eth0", "::1", "2001:db8::7", "::ffff:192.0.2.1"])
def test_an_ipv6_address_is_refused_as_such(text: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_ipv4(text)
    assert info.value.message == f"{text} is an IPv6 address: IPv6 underlays are not supported yet"
    with pytest.raises(AddressError, match="IPv6 underlays are not supported yet"):
        resolve_host(text)  # not handed to the resolver, whose errno would say nothing


def test_names_are_resolved_once_and_say_to_what() -> None:
    assert resolve_host("10.1") == PeerAddress("10.1.0.0")
    assert str(resolve_host("192.0.2.1")) == "192.0.2.1"
    peer = resolve_host("localhost")
    assert peer == PeerAddress("127.0.0.1", "localhost")
    assert str(peer) == "localhost (resolved to 127.0.0.1)"
    with pytest.raises(DatapathError, match=r"^cannot resolve peer 'no-such-host\.invalid': "):
        resolve_host("no-such-host.invalid")


def test_config_differences_name_each_field() -> None:
    mine = VnetConfig.from_cli("97", bridge="br97", encapsulation="etherip")
    asked = VnetConfig.from_cli("97")
    assert mine.differences(asked) == ["bridge br97 (not vnet97)", "encapsulation etherip (not udp)"]
    assert asked.differences(asked) == []
    keyed = VnetConfig.from_cli("97", security="auth", key_files=("/k/1.key",))
    rotated = keyed.with_keys(("/k/2.key", "/k/1.key"))
    assert rotated.differences(keyed) == ["key-file /k/2.key /k/1.key (not /k/1.key)"]
    assert rotated.differences(keyed, keys=False) == []


def test_privilege_check_reads_the_effective_capabilities() -> None:
    held = privilege.effective_capabilities()
    assert held is not None
    if held >> privilege.CAP_NET_ADMIN & 1:
        privilege.require("x", privilege.CAP_NET_ADMIN)
    else:
        with pytest.raises(DatapathError, match=r"^x needs root \(or CAP_NET_ADMIN\)$"):
            privilege.require("x", privilege.CAP_NET_ADMIN)


class PortsOnly(Datapath):
    """A datapath double for port changes: records them, refuses the interface `busy0`."""

    kind = "test"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def port_add(self, vid: VnetId, ifname: str) -> None:
        if ifname == "busy0":
            raise DatapathError("EBUSY", "port busy0: the interface is enslaved to br0")
        self.calls.append(("add", str(vid), ifname))

    def port_del(self, vid: VnetId, ifname: str) -> None:
        self.calls.append(("del", str(vid), ifname))

    def vnets(self) -> list:
        return [["vnet", ["id", str(VnetId.parse("97"))]]]

    vnet_add = vnet_del = vnet_keys = ports = vif_add = vif_del = vifs = peer_add = peer_del = \
        endpoint_add = endpoint_del = endpoints = \
        peers = varp_flush = varp = set_mcaddr = stats = lambda self, *a: None  # type: ignore[assignment]


def test_port_changes_go_to_the_datapath_then_the_state(tmp_path) -> None:
    """Like key rotation: the datapath first, and the state only if it took the change."""
    dp = PortsOnly()
    ctrl = Controller(str(tmp_path), datapath=dp)
    ctrl.create_vnet(VnetConfig.from_cli("97"))
    assert ctrl.add_port("97", "r1").ports == ("r1",)
    with pytest.raises(DatapathError, match="enslaved to br0"):
        ctrl.add_port("97", "busy0")
    with pytest.raises(StateError, match="port r1 is already in vnet"):
        ctrl.add_port("vnif97", "r1")  # found by its vnetif too
    with pytest.raises(StateError, match="interface name 'a b' contains ' '"):
        ctrl.add_port("97", "a b")
    with pytest.raises(StateError, match="has no port r9"):
        ctrl.delete_port("97", "r9")
    assert ctrl.find_vnet("97").ports == ("r1",)
    assert ctrl.delete_port("97", "r1").ports == ()
    assert ctrl.find_vnet("97").ports == ()
    assert dp.calls == [("add", str(VnetId.parse("97")), "r1"), ("del", str(VnetId.parse("97")), "r1")]
    # A vnet created again with --exist-ok and no ports keeps the ports it has.
    ctrl.add_port("97", "r2")
    assert ctrl.create_vnet(VnetConfig.from_cli("97"), exist_ok=True).ports == ("r2",)
    with pytest.raises(StateError, match=r"port r2 \(not r3\)"):
        ctrl.create_vnet(VnetConfig.from_cli("97", ports=("r3",)), exist_ok=True)


class EndpointsOnly(PortsOnly):
    """A datapath whose endpoint 127.0.0.1:5000 is taken by someone else."""

    def endpoint_add(self, vid: VnetId, spec: EndpointSpec) -> None:
        if spec.local == ("127.0.0.1", 5000):
            raise DatapathError("EADDRINUSE", f"endpoint {spec}: cannot bind 127.0.0.1:5000: in use")
        self.calls.append(("add", str(vid), str(spec)))

    def endpoint_del(self, vid: VnetId, spec: EndpointSpec) -> None:
        self.calls.append(("del", str(vid), str(spec)))


def test_endpoint_changes_go_to_the_datapath_then_the_state(tmp_path) -> None:
    """As ports: an endpoint the datapath cannot open is not kept; one that clashes with
    another vnet's is refused before the datapath is asked."""
    dp = EndpointsOnly()
    ctrl = Controller(str(tmp_path), datapath=dp)
    ctrl.create_vnet(VnetConfig.from_cli("97"))
    ctrl.create_vnet(VnetConfig.from_cli("98"))
    udp = EndpointSpec.parse(["udp", "127.0.0.1:6000", "127.0.0.1:6001"])
    assert ctrl.add_endpoint("97", udp).endpoints == (udp,)
    with pytest.raises(DatapathError, match="in use"):
        ctrl.add_endpoint("97", EndpointSpec.parse(["udp", "127.0.0.1:5000", "127.0.0.1:5001"]))
    with pytest.raises(StateError, match=r"endpoint \(udp 127.0.0.1:6000 127.0.0.1:6001\) is already in vnet"):
        ctrl.add_endpoint("97", udp)
    with pytest.raises(StateError, match=r"vnet 0+:0+:0+:0+:0+:0+:0+:0097 has endpoint \(udp 127.0.0.1:6000"):
        ctrl.add_endpoint("98", EndpointSpec.parse(["udp", "0.0.0.0:6000", "127.0.0.1:7001"]))
    tcp = EndpointSpec.parse(["tcp-connect", "127.0.0.1:6000"])  # another protocol: no clash
    ctrl.add_endpoint("98", tcp)
    with pytest.raises(StateError, match=r"has no endpoint \(tcp-listen 127.0.0.1:7000\) \(its endpoints: "
                                         r"\(udp 127.0.0.1:6000 127.0.0.1:6001\)\)"):
        ctrl.delete_endpoint("97", EndpointSpec.parse(["tcp-listen", "127.0.0.1:7000"]))
    assert ctrl.find_vnet("97").endpoints == (udp,)
    assert ctrl.delete_endpoint("97", udp).endpoints == ()
    assert ctrl.find_vnet("97").endpoints == () and ctrl.find_vnet("98").endpoints == (tcp,)
    vid97, vid98 = str(VnetId.parse("97")), str(VnetId.parse("98"))
    assert dp.calls == [("add", vid97, str(udp)), ("add", vid98, str(tcp)), ("del", vid97, str(udp))]
    # --exist-ok without endpoints keeps them; with others, the difference is named.
    assert ctrl.create_vnet(VnetConfig.from_cli("98"), exist_ok=True).endpoints == (tcp,)
    with pytest.raises(StateError, match=r"endpoint \(tcp-connect 127.0.0.1:6000\) \(not \(tcp-listen"):
        ctrl.create_vnet(VnetConfig.from_cli("98", endpoints=("tcp-listen 127.0.0.1:7000",)), exist_ok=True)
