"""Listing records in the original's SXP layout (reference 3.5), shared by both datapaths.

Each record keeps the original's fields, in the original's order, with the intended
untruncated forms (39-character ids, dotted quads); fields the original did not
have come after them.  Ages and TTLs are in whole seconds, not jiffies, so they do
not depend on the kernel's HZ.
"""
from __future__ import annotations

from typing import Any, Optional

from vnet.model.addr import format_mac
from vnet.model.vnetid import VnetId

Record = list


def vnet_record(vid: VnetId, vnetif: str, security: str, header: int, **extra: Any) -> Record:
    rec: Record = ["vnet", ["id", str(vid)], ["vnetif", vnetif], ["security", security],
                   ["header", str(header)]]
    rec += [[k, *map(str, v)] if isinstance(v, (list, tuple)) else [k, str(v)] for k, v in extra.items()]
    return rec


def group_field(group: str | None) -> dict[str, str]:
    """The `group` field of a vnet record: only for a vnet with its own group, so the
    records of others (and their listings) stay the original's."""
    return {"group": group} if group else {}


def port_record(vnet: VnetId, ifname: str, state: str, ifindex: int, rx_packets: int,
                tx_packets: int, rx_bytes: int, tx_bytes: int, link: Optional[list] = None) -> Record:
    """A port of a vnet: `state` is attached, or waiting (no interface of that name
    now; ifindex 0).  rx: frames from the port into the vnet; tx: frames the vnet sent
    out of the port.  `link`: the port's link control options (LinkControl.to_sxp), as
    `(link (loss 10) ...)`, `(link)` for none; left out by a datapath that does not
    know them (the controller fills them in from the state)."""
    return ["port", ["vnet", str(vnet)], ["ifname", ifname], ["state", state],
            ["ifindex", str(ifindex)], ["rx_packets", str(rx_packets)],
            ["tx_packets", str(tx_packets)], ["rx_bytes", str(rx_bytes)], ["tx_bytes", str(tx_bytes)]] + (
        [["link", *link]] if link is not None else [])


#: The counters of an endpoint (vnet/datapath/vnetd/endpoint.py) whose sum is its drops.
ENDPOINT_DROPS = ("tx_busy", "tx_down", "tx_errors", "rx_errors", "rx_runts", "rx_foreign", "framing_errors")


def endpoint_drops(counters: dict[str, int]) -> int:
    """Frames either way an endpoint dropped, from its counters by name (either datapath's)."""
    return sum(counters.get(k, 0) for k in ENDPOINT_DROPS)


def endpoint_record(vnet: VnetId, kind: str, local: str, remote: str, state: str, rx_packets: int,
                    tx_packets: int, rx_bytes: int, tx_bytes: int, drops: int) -> Record:
    """A socket endpoint of a vnet (doc/endpoints.md): `local` the address we bind,
    `remote` the VM's QEMU address ("-" where the kind has none); `state` is
    connected, listening (tcp-listen, no client now) or waiting (tcp-connect between
    attempts).  rx: frames from the VM into the vnet; tx: frames sent to the VM;
    drops: frames either way the endpoint dropped (socket full, no connection,
    foreign sender, runts, framing errors)."""
    return ["endpoint", ["vnet", str(vnet)], ["kind", kind], ["local", local], ["remote", remote],
            ["state", state], ["rx_packets", str(rx_packets)], ["tx_packets", str(tx_packets)],
            ["rx_bytes", str(rx_bytes)], ["tx_bytes", str(tx_bytes)], ["drops", str(drops)]]


def keys_record(vid: VnetId, security: str, held: list) -> Record:
    """The keys a secure vnet holds, send key first: ids and files, never the secrets."""
    return ["vnet-keys", ["id", str(vid)], ["security", security], ["send", str(held[0].id)]] + [
        ["key", ["id", str(k.id)], ["file", k.path]] for k in held]


def viftable_record(ttl: int, sweeps: int) -> Record:
    return ["viftable", ["table_ttl", str(ttl)], ["entry_ttl", str(ttl)], ["sweeps", str(sweeps)]]


def vif_record(vnet: bytes, mac: bytes, age: float) -> Record:
    return ["vif", ["vnet", str(VnetId.from_bytes(vnet))], ["vmac", format_mac(mac)],
            ["age", str(int(age))]]


def varp_record(device: str, mcaddr: str, ucaddr: str, port: int, encapsulation: str,
                ttl: int) -> Record:
    return ["varp", ["device", device], ["mcast_addr", mcaddr], ["ucast_addr", ucaddr],
            ["port", str(port)], ["encapsulation", encapsulation], ["entry_ttl", str(ttl)]]


def ventry_record(vnet: bytes, mac: bytes, addr: str, age: float) -> Record:
    return ["ventry", ["ref", "1"], ["state", "reachable"], ["flags", "-"], ["addr", addr],
            ["queue", "0"], ["age", str(int(age))], ["vmac", format_mac(mac)],
            ["vnet", str(VnetId.from_bytes(vnet))]]


def peer_record(addr: str, port: int, tx: int, rx: int) -> Record:
    return ["vnet_peer", ["addr", addr], ["port", str(port)], ["tx_packets", str(tx)],
            ["rx_packets", str(rx)]]


def counters_record(head: str, counters: dict[str, int]) -> Record:
    return [head] + [[k, str(v)] for k, v in sorted(counters.items())]
