"""The parts of vnetd's fast path that need no kernel: the tables tell their mirror of
every change (so the maps never hold a MAC vnetd forgot or moved), and who completes
partial checksums for each kind of underlay device (doc/fastpath.md)."""
from __future__ import annotations

import pytest

from vnet.datapath.fastpath.fastpath import CSUM_COMPLETE, CSUM_LEAVE, CSUM_SLOW, csum_mode
from vnet.datapath.vnetd.tables import SuperHosts, VarpCache, VifTable

V = b"\0" * 15 + b"\x97"
M1, M2 = bytes.fromhex("aa0000000001"), bytes.fromhex("aa0000000002")


class Mirror:
    """Keeps what it is told, as the maps would."""

    def __init__(self) -> None:
        self.held: dict[tuple[bytes, bytes], str | None] = {}

    def set(self, vnet: bytes, mac: bytes, addr: str | None) -> None:
        self.held[(vnet, mac)] = addr

    def delete(self, vnet: bytes, mac: bytes) -> None:
        self.held.pop((vnet, mac), None)


def test_varp_cache_mirror_follows_learn_move_forget_flush_and_expiry():
    cache, m = VarpCache(ttl=60), Mirror()
    cache.mirror = m
    cache.learn(V, M1, "10.0.0.2", now=0)
    cache.learn(V, M2, "10.0.0.3", now=0)
    assert m.held == {(V, M1): "10.0.0.2", (V, M2): "10.0.0.3"}
    cache.learn(V, M1, "10.0.0.4", now=1)  # moved
    assert m.held[(V, M1)] == "10.0.0.4"
    cache.forget(V, M1)
    assert (V, M1) not in m.held
    cache.learn(V, M1, "10.0.0.2", now=50)
    cache.sweep(now=100)  # M2 (refreshed at 0) expires, M1 (50) stays
    assert m.held == {(V, M1): "10.0.0.2"}
    cache.flush(V)
    assert m.held == {}
    cache.learn(V, M1, "10.0.0.2", now=0)
    cache.flush()
    assert m.held == {} and cache.entries == {}


def test_a_refresh_is_not_told():
    cache, calls = VarpCache(), []

    class Counting(Mirror):
        def set(self, vnet, mac, addr):
            calls.append(addr)

    cache.mirror = Counting()
    for now in range(5):
        cache.learn(V, M1, "10.0.0.2", now=now)
    assert calls == ["10.0.0.2"]


def test_vif_table_mirror_follows_add_remove_flush_and_expiry():
    vifs, m = VifTable(ttl=60), Mirror()
    vifs.mirror = m
    vifs.add(V, M1, now=0)
    assert vifs.touch(V, M2, now=10)
    assert set(m.held) == {(V, M1), (V, M2)}
    vifs.remove(V, M1)
    assert set(m.held) == {(V, M2)}
    vifs.sweep(now=100)
    assert m.held == {}
    vifs.add(V, M1, now=0)
    vifs.flush(V)
    assert m.held == {}


def test_super_hosts_tell_changes_only():
    hosts, told = SuperHosts(), []
    hosts.changed = lambda addr, ok: told.append((addr, ok))
    hosts.add("10.0.0.2")
    hosts.add("10.0.0.2")
    hosts.discard("10.0.0.3")
    hosts.discard("10.0.0.2")
    assert told == [("10.0.0.2", True), ("10.0.0.2", False)]


# name -> (index, kind, lower index, master index)
LINKS = {
    "eth0": (2, None, None, None),            # a NIC
    "veth0": (3, "veth", 9, None),
    "br0": (4, "bridge", None, None),
    "eth1": (5, None, None, 4),               # br0's port, a NIC
    "br1": (6, "bridge", None, None),
    "veth1": (7, "veth", None, 6),            # br1's ports: a veth and a NIC
    "eth2": (8, None, None, 6),
    "eth0.7": (10, "vlan", 2, None),
    "vl9": (11, "vlan", 3, None),             # a VLAN on the veth
    "bond0": (12, "bond", None, None),        # no slaves
    "tun0": (13, "tun", None, None),
    "mv0": (14, "macvlan", 99, None),         # its lower in another namespace
}


@pytest.mark.parametrize("device, mode", [
    ("eth0", CSUM_LEAVE), ("veth0", CSUM_COMPLETE), ("br0", CSUM_LEAVE), ("br1", CSUM_SLOW),
    ("eth0.7", CSUM_LEAVE), ("vl9", CSUM_COMPLETE), ("bond0", CSUM_SLOW), ("tun0", CSUM_SLOW),
    ("mv0", CSUM_SLOW), ("gone", CSUM_SLOW)])
def test_who_completes_partial_checksums(device, mode):
    assert csum_mode(device, LINKS) == mode
