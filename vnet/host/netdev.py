"""Links, bridges and addresses through pyroute2: the only way the product touches them.

Bridges are made as the original made them (STP off, forward delay 0) and, unlike
the original, with every link-local group address the kernel allows forwarded
(group_fwd_mask 0xfff8: LLDP, 802.1X, MVRP, ...), so lab protocols cross the vnet.
STP BPDUs already pass a bridge whose own STP is off; pause and LACP frames
(01:80:c2:00:00:01-02) are the kernel's hard limit.

The host is not on a vnet unless an admin puts it there (doc/attach.md): a vnet device
is a port with IPv6 off, and a vnet bridge gets no address, no automatic IPv6 and no
multicast snooping (whose all-snoopers membership reports would come from the host),
and answers ARP only for addresses on the bridge itself.  Frames from a vnet reach the
host's stack only through the bridge device, so that is where the host could answer.
"""
from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vnet.errors import DatapathError

GROUP_FWD_MASK = 0xFFF8

log = logging.getLogger("vnet")

#: IPv6 on a vnet bridge, if an admin turns it on: only the addresses they add (no
#: link-local address: IN6_ADDR_GEN_MODE_NONE), no SLAAC, no router advertisements
#: taken from a VM (which could otherwise give the host routes into the vnet).
BRIDGE_IPV6 = {"addr_gen_mode": "1", "accept_ra": "0", "autoconf": "0"}
#: IPv4 on a vnet bridge: ARP answered only for the bridge's own addresses, not for
#: every address of the host as the kernel's default (0) does on any interface.
BRIDGE_IPV4 = {"arp_ignore": "1"}
#: ifa_proto of the addresses the kernel makes itself (linux/if_addr.h): from a router
#: advertisement (IFAPROT_KERNEL_RA) and link-local (IFAPROT_KERNEL_LL).  Since Linux
#: 5.18; before, a link-local address counts as the kernel's.
_KERNEL_MADE = (2, 3)

_TUNSETIFF = 0x400454CA
_TUNSETOFFLOAD = 0x400454D0
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IFF_VNET_HDR = 0x4000
_TUN_F_CSUM, _TUN_F_TSO4, _TUN_F_TSO6 = 0x01, 0x02, 0x04

#: Longest super-frame an offloading tap may hand us: with the 66 bytes of a sealed
#: message (doc/security.md; 22 for plain VUDP) it must fit one UDP datagram (65507
#: bytes).  One cap for every vnet keeps the rule simple.  The kernel segments longer
#: GSO packets in software before they reach the tap.
SUPER_FRAME_MAX = 65507 - 66


def open_tap(name: str, offload: bool = False) -> int:
    """Create (or attach to) tap device `name`; returns a non-blocking fd.

    The device lives as long as the fd: if the daemon dies, the kernel removes it,
    and a restart creates it again and re-enslaves it.  Every read and write carries
    a virtio-net header, so received super-frames can always be written back for
    segmentation.  With offload, TCP also hands us unsegmented super-frames (up to
    SUPER_FRAME_MAX bytes) with partial checksums: one read then moves ~64 KB,
    which is what lets a Python datapath keep up.
    """
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    flags = _IFF_TAP | _IFF_NO_PI | _IFF_VNET_HDR
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), flags))
        if offload:
            fcntl.ioctl(fd, _TUNSETOFFLOAD, _TUN_F_CSUM | _TUN_F_TSO4 | _TUN_F_TSO6)
    except OSError as e:
        os.close(fd)
        raise DatapathError.from_os_error(e, f"cannot create tap device {name}") from None
    return fd


def limit_gso(ipr: IPRoute, name: str) -> None:
    """Cap super-frames from an offloading tap so each fits in one UDP datagram."""
    index = link_index(ipr, name)
    if index is not None:
        ipr.link("set", index=index, gso_max_size=SUPER_FRAME_MAX)


def link_index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _kind(link) -> str | None:
    """A link message's rtnetlink kind ("veth", "bridge", ...), None for a NIC."""
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def link_kind(ipr: IPRoute, index: int) -> str | None:
    return _kind(ipr.get_links(index)[0])


#: Every link of a namespace by name: (index, kind, lower index, master index).
LinkStack = dict[str, tuple[int, "str | None", "int | None", "int | None"]]


def link_stack(ipr: IPRoute) -> LinkStack:
    """Every link of this namespace by name, with what says which devices its packets
    leave by: its rtnetlink kind, its lower device (IFLA_LINK of a VLAN or macvlan;
    None if none, or in another namespace) and its master (a bridge, a bond)."""
    out: LinkStack = {}
    for link in ipr.get_links():
        lower = None if link.get_attr("IFLA_LINK_NETNSID") is not None else link.get_attr("IFLA_LINK")
        out[link.get_attr("IFLA_IFNAME")] = (link["index"], _kind(link), lower, link.get_attr("IFLA_MASTER"))
    return out


def ensure_bridge(ipr: IPRoute, name: str) -> bool:
    """Make sure bridge `name` exists, keeps the host off its vnet, and is up; True if
    this call created it.  A bridge that was there is taken over as if vnet had made it,
    except for the addresses an admin gave it, which stay (with a warning)."""
    index = link_index(ipr, name)
    created = False
    if index is None:
        try:
            ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0,
                     br_group_fwd_mask=GROUP_FWD_MASK, br_mcast_snooping=0)
        except NetlinkError as e:
            raise DatapathError("EIO", f"cannot create bridge {name}: {e.args[1]}") from None
        index = link_index(ipr, name)
        created = True
    elif link_kind(ipr, index) != "bridge":
        raise DatapathError("EEXIST", f"{name} exists and is not a bridge")
    else:
        try:
            ipr.link("set", index=index, kind="bridge", br_mcast_snooping=0)
        except NetlinkError as e:
            raise DatapathError("EIO", f"cannot turn multicast snooping off on bridge {name}: "
                                f"{e.args[1]}") from None
    try:
        kept = _isolate_bridge(ipr, name, index)
    except DatapathError:
        if created:
            delete_link(ipr, name)
        raise
    if kept:
        log.warning("bridge %s keeps the addresses it was given (%s): the host is on its vnet "
                    "through them", name, ", ".join(kept))
    ipr.link("set", index=index, state="up")
    return created


def _isolate_bridge(ipr: IPRoute, name: str, index: int) -> list[str]:
    """Apply BRIDGE_IPV4 and BRIDGE_IPV6 to bridge `name`, remove the addresses the kernel
    made on it and turn IPv6 off unless an admin gave it IPv6 addresses; returns the
    addresses an admin gave it (IPv4 and IPv6), which stay."""
    set_devconf("ipv4", name, BRIDGE_IPV4)
    kept = [_cidr(a) for a in ipr.get_addr(family=socket.AF_INET, index=index)]
    if not has_ipv6():
        return kept
    set_devconf("ipv6", name, BRIDGE_IPV6)
    given, made = [], []
    for a in ipr.get_addr(family=socket.AF_INET6, index=index):
        (made if _kernel_made(a) else given).append(a)
    if not given:
        set_devconf("ipv6", name, {"disable_ipv6": "1"})  # removes the kernel's addresses too
        return kept
    for a in made:
        try:
            ipr.addr("del", index=index, address=a.get_attr("IFA_ADDRESS"), prefixlen=a["prefixlen"])
        except NetlinkError as e:
            raise DatapathError("EIO", f"cannot remove {a.get_attr('IFA_ADDRESS')} from bridge {name}: "
                                f"{e.args[1]}") from None
    return kept + [_cidr(a) for a in given]


def _kernel_made(addr) -> bool:
    proto = addr.get_attr("IFA_PROTO")
    if proto is None:
        return addr.get_attr("IFA_ADDRESS").lower().startswith("fe80:")
    return proto in _KERNEL_MADE


def _cidr(addr) -> str:
    return f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"


def enslave(ipr: IPRoute, ifname: str, bridge: str, mtu: int | None = None) -> None:
    index = link_index(ipr, ifname)
    master = link_index(ipr, bridge)
    if index is None or master is None:
        raise DatapathError("ENODEV", f"cannot attach {ifname} to {bridge}: no such device")
    try:
        if mtu is not None:
            ipr.link("set", index=index, mtu=mtu)
        ipr.link("set", index=index, master=master, state="up")
    except NetlinkError as e:
        raise DatapathError("EIO", f"cannot attach {ifname} to {bridge}: {e.args[1]}") from None


def bridge_ports(ipr: IPRoute, bridge: str) -> list[str]:
    master = link_index(ipr, bridge)
    if master is None:
        return []
    return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links(master=master)]


def bridge_of(ipr: IPRoute, ifname: str) -> str | None:
    index = link_index(ipr, ifname)
    if index is None:
        return None
    master = ipr.get_links(index)[0].get_attr("IFLA_MASTER")
    if not master:
        return None
    return ipr.get_links(master)[0].get_attr("IFLA_IFNAME")


def delete_link(ipr: IPRoute, name: str) -> bool:
    index = link_index(ipr, name)
    if index is None:
        return False
    try:
        ipr.link("del", index=index)
    except NetlinkError as e:
        raise DatapathError("EIO", f"cannot delete {name}: {e.args[1]}") from None
    return True


def bridges(ipr: IPRoute) -> dict[str, list[str]]:
    """Every bridge with its ports."""
    links = ipr.get_links()
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
    out: dict[str, list[str]] = {}
    for link in links:
        if _kind(link) == "bridge":
            out[link.get_attr("IFLA_IFNAME")] = []
    for link in links:
        master = link.get_attr("IFLA_MASTER")
        if master and names.get(master) in out:
            out[names[master]].append(link.get_attr("IFLA_IFNAME"))
    return out


def link_mac(ipr: IPRoute, name: str) -> str | None:
    index = link_index(ipr, name)
    if index is None:
        return None
    return ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")


def link_summary(ipr: IPRoute, name: str) -> dict | None:
    """MAC, MTU, state and counters of a link, for `vn vnets -l`."""
    index = link_index(ipr, name)
    if index is None:
        return None
    link = ipr.get_links(index)[0]
    stats = link.get_attr("IFLA_STATS64")
    out = {
        "mac": link.get_attr("IFLA_ADDRESS"),
        "mtu": link.get_attr("IFLA_MTU"),
        "state": link.get_attr("IFLA_OPERSTATE"),
    }
    if stats is not None:
        for key in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped"):
            out[key] = stats[key]
    return out


def ipv4_addresses(ipr: IPRoute) -> list[tuple[str, str, int, int]]:
    """(ifname, address, ifindex, prefix length) of every IPv4 address not on loopback."""
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    out = []
    for a in ipr.get_addr(family=2):
        addr = a.get_attr("IFA_ADDRESS")
        if addr and not addr.startswith("127."):
            out.append((names.get(a["index"], "?"), addr, a["index"], a["prefixlen"]))
    return out


#: Route types (rtnetlink's RTN_*) of the local table, by the names vnet.model.peer uses.
_ROUTE_TYPES = {2: "local", 3: "broadcast"}
_RT_TABLE_LOCAL = 255


def local_routes(ipr: IPRoute) -> list[tuple[str, int, str]]:
    """The IPv4 local routing table (`ip route show table local`): the addresses of this
    namespace and their broadcast addresses, as (destination, prefix length, type)."""
    return [(r.get_attr("RTA_DST"), r["dst_len"], _ROUTE_TYPES.get(r["type"], str(r["type"])))
            for r in ipr.get_routes(family=socket.AF_INET, table=_RT_TABLE_LOCAL)
            if r.get_attr("RTA_DST")]


def default_route_interface(ipr: IPRoute) -> str | None:
    """The interface of the IPv4 default route, if there is one."""
    for route in ipr.get_default_routes(family=2):
        oif = route.get_attr("RTA_OIF")
        if oif:
            return ipr.get_links(oif)[0].get_attr("IFLA_IFNAME")
    return None


#: A port of a vnet (and its device) as the host's stack sees it: no IPv6 of its own
#: (no link-local address, no router advertisements taken), no ARP answers, and
#: strict reverse-path filtering, so the IPv4 a VM sends (a broadcast, say) is not
#: taken in by the host: a port has no route back to it.  (A port is not a bridge
#: port: the host's stack sees what it receives.)
PORT_IPV6 = {"addr_gen_mode": "1", "accept_ra": "0", "disable_ipv6": "1"}
PORT_IPV4 = {"arp_ignore": "8", "rp_filter": "1"}


def isolate_port(ifname: str) -> None:
    """Keep a vnet device or port from sending anything of the host's own (IPv6
    link-local, MLD, ND; ARP answers) into the vnet: it is a port, not a host.  Called
    before the device is first up."""
    set_devconf("ipv4", ifname, PORT_IPV4)
    if has_ipv6():
        set_devconf("ipv6", ifname, PORT_IPV6)


def check_port(ipr: IPRoute, ifname: str, index: int) -> None:
    """Refuse an interface that cannot be a port: one with a master (a bridge, a bond),
    a bridge, or one with IPv4 addresses (the host's: its traffic is not a vnet's)."""
    link = ipr.get_links(index)[0]
    master = link.get_attr("IFLA_MASTER")
    if master:
        name = ipr.get_links(master)[0].get_attr("IFLA_IFNAME")
        raise DatapathError("EBUSY", f"port {ifname}: the interface is enslaved to {name}; take it "
                            f"off first ('ip link set dev {ifname} nomaster')")
    if link_kind(ipr, index) == "bridge":
        raise DatapathError("EINVAL", f"port {ifname}: the interface is a bridge; attach the bridge's "
                            "vnet with its bridge (vn vnet-create -b), or make a port of a veth on it")
    addrs = [_cidr(a) for a in ipr.get_addr(family=socket.AF_INET, index=index)]
    if addrs:
        raise DatapathError("EBUSY", f"port {ifname}: the interface has IPv4 addresses "
                            f"({', '.join(addrs)}): it carries the host's traffic, not a vnet's")


def prepare_port(ipr: IPRoute, ifname: str, index: int, mtu: int) -> None:
    """An interface made a port: isolated from the host, with the vnet's MTU, up."""
    isolate_port(ifname)
    try:
        ipr.link("set", index=index, mtu=mtu)
        ipr.link("set", index=index, state="up")
    except NetlinkError as e:
        raise DatapathError("EINVAL", f"port {ifname}: cannot set MTU {mtu} and bring it up: "
                            f"{e.args[1]}") from None


def set_mtu(ipr: IPRoute, name: str, mtu: int) -> None:
    index = link_index(ipr, name)
    if index is None:
        raise DatapathError("ENODEV", f"cannot set the MTU of {name}: no such device")
    try:
        ipr.link("set", index=index, mtu=mtu)
    except NetlinkError as e:
        raise DatapathError("EINVAL", f"cannot set the MTU of {name} to {mtu}: {e.args[1]}") from None


def link_names(ipr: IPRoute) -> dict[str, int]:
    """Every link of this namespace: its index by name."""
    return {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}


def has_ipv6() -> bool:
    """False on a kernel without IPv6 (or booted with ipv6.disable=1): nothing to turn off."""
    return os.path.isdir("/proc/sys/net/ipv6/conf")


def set_devconf(family: str, ifname: str, values: dict[str, str]) -> None:
    """Write sysctls of one device (/proc/sys/net/FAMILY/conf/IFNAME/KEY) in the caller's
    namespace: the kernel has no netlink for most of them.  A write that fails is an
    error, never ignored: the host would be left on the vnet."""
    for key, value in values.items():
        path = f"/proc/sys/net/{family}/conf/{ifname}/{key}"
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise DatapathError.from_os_error(e, f"cannot set {path} to {value}") from None


def pick_address(ipr: IPRoute, interface: str | None, option: str | None = "--address") -> str:
    """The underlay address: the only IPv4 address of `interface`, or of the interface
    holding the default route, or of the host; else a clear error.  Shared by vnetd and
    the kernel module's client, so both datapaths pick the same address; `option` names
    the way the caller's user can give one instead (None: there is none to name)."""
    if interface is None:
        interface = default_route_interface(ipr)
    found = [(ifname, addr) for ifname, addr, _, _ in ipv4_addresses(ipr)
             if interface is None or ifname == interface]
    if len(found) == 1:
        return found[0][1]
    where = f"on {interface}" if interface else "on this host"
    if not found:
        hint = f"; give one with {option}" if option else ""
        raise DatapathError("EADDRNOTAVAIL", f"no IPv4 address {where}{hint}")
    listed = ", ".join(f"{a} ({i})" for i, a in found)
    hint = f"; choose one with {option}" if option else ""
    raise DatapathError("EADDRNOTAVAIL", f"several IPv4 addresses {where} ({listed}){hint}")
