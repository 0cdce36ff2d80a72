"""Ports of the kernel module (spec14): interfaces on a vnet without a bridge, so every
layer-2 protocol crosses unchanged (LACP too, which a Linux bridge never forwards),
jumbo frames on a vnet with a larger MTU, local switching between ports, ports that
follow their interfaces, a clean unload with ports attached, and the refusals.

These tests drive KmodClient directly inside each host's namespace, to see the
module's own answers; tests/netns/test_ports.py runs the same features through `vn`
on both datapaths (test_kmod_scenarios.py collects it here)."""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lab.links import Link
from lab.vnethost import run_in_namespace
from lab.procs import script_argv
from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import loader
from vnet.datapath.kmod.family import VNET_CMD_PORT_ADD, VNET_CMD_VNET_ADD
from vnet.errors import DatapathError
from vnet.model.config import ConfigError, VnetConfig
from vnet.model.vnetid import VnetId

VNET_KO = Path(os.environ.get("VNET_KO") or loader.default_module_path())
DEADLINE = 60.0


def vnet(num: int, bridge: str | None = None, **kw) -> VnetConfig:
    """Vnet `num` with no bridge unless given one, as `vn vnet-create --bridge none`."""
    return VnetConfig(VnetId.parse(str(num)), bridge, f"vnif{num}", **kw)


def call(host, method: str, *args):
    """KmodClient.<method>(*args) in `host`'s namespace: its result, or the
    DatapathError it raised (returned, not raised, so tests can look at it)."""
    def run() -> None:
        try:
            with kmod.KmodClient() as c:
                out = {"result": getattr(c, method)(*args)}
        except DatapathError as e:
            out = {"error": [e.code, e.message]}
        print(json.dumps(out))

    code, out, err = run_in_namespace(host.host.ns, run, timeout=120)
    assert code == 0, f"KmodClient.{method} in {host.name} failed:\n{err}"
    found = json.loads(out)
    if "error" in found:
        return DatapathError(*found["error"])
    return found["result"]


def ok(host, method: str, *args):
    result = call(host, method, *args)
    if isinstance(result, DatapathError):
        raise AssertionError(f"KmodClient.{method}{args} in {host.name}: {result.code}: {result.message}")
    return result


def refused(host, method: str, *args) -> DatapathError:
    result = call(host, method, *args)
    assert isinstance(result, DatapathError), f"KmodClient.{method}{args} in {host.name} did not fail"
    return result


def ports(host) -> dict[str, dict]:
    """{ifname: {field: value}} of `host`'s port records; `link` is the list of the
    port's link control options (empty for none)."""
    out = {}
    for r in ok(host, "ports"):
        fields = {f[0]: (f[1] if len(f) == 2 and f[0] != "link" else f[1:]) for f in r[1:]}
        out[fields["ifname"]] = fields
    return out


def wait_until(what: str, cond, timeout: float = DEADLINE):
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < end, f"{what}: not within {timeout:g} s"
        time.sleep(0.1)


def wait_state(host, ifname: str, state: str) -> dict[str, str]:
    return wait_until(f"port {ifname} of {host.name} {state}",
                      lambda: (p := ports(host).get(ifname)) and p["state"] == state and p)


def port_vm(lab, name: str, host, port: str, address: str, mtu: int | None = None,
            mac: str | None = None):
    """A VM whose interface's far end, `port` in `host`, is on no bridge: a port to be."""
    vm = lab.vm(name, host.host, "none", address, port=port, plugged=False, mac=mac)
    assert vm.link.intf2.name == port
    if mtu is not None:
        lab.run(vm, ["ip", "link", "set", "eth0", "mtu", str(mtu)], check=True)
    return vm


# -- frames ------------------------------------------------------------------------------

#: A capture that gives each frame as it was on the wire: the kernel takes a VLAN tag
#: out of the frame before packet sockets see it (PACKET_AUXDATA has it), as libpcap
#: puts it back.
CAPTURE = r"""
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
s.bind((sys.argv[1], 0))
print("ready", flush=True)
while True:
    f, anc, _, (_, _, pkttype, _, _) = s.recvmsg(65536, 64)
    if pkttype == socket.PACKET_OUTGOING:
        continue
    for level, kind, data in anc:
        if level == 263 and kind == 8:
            status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", data[:20])
            if status & 0x10:  # TP_STATUS_VLAN_VALID
                tpid = tpid if status & 0x40 else 0x8100
                f = f[:12] + struct.pack("!HH", tpid, tci) + f[12:]
    sys.stdout.write(f.hex() + "\n")
    sys.stdout.flush()
"""

SEND = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for line in sys.stdin:
    s.send(bytes.fromhex(line.strip()))
"""


class Frames:
    """Frames a VM receives on one interface, as sent."""

    def __init__(self, lab, vm, ifname: str = "eth0") -> None:
        self.seen: list[bytes] = []
        self._lock = threading.Lock()
        self._proc = lab.popen(vm, script_argv(CAPTURE, ifname, unbuffered=True),
                               stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout.readline().strip() == "ready"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            with self._lock:
                self.seen.append(bytes.fromhex(line.strip()))

    def frames(self) -> list[bytes]:
        with self._lock:
            return list(self.seen)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


def send(lab, vm, frames: list[bytes], ifname: str = "eth0") -> None:
    lab.run(vm, script_argv(SEND, ifname), input="".join(f.hex() + "\n" for f in frames),
            check=True, timeout=60)


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def pad(frame: bytes, tag: bytes) -> bytes:
    """A frame made unique by `tag`, at least 60 bytes (no padding by anyone)."""
    frame += tag
    return frame + bytes(max(0, 60 - len(frame)))


def matrix(src: bytes, dst: bytes, tag: bytes, jumbo: int) -> dict[str, bytes]:
    """The frames of the issue's matrix, from `src`; unicast ones to `dst`."""
    llc_stp = bytes.fromhex("424203") + bytes.fromhex("0000" "00" "00") + bytes(31)
    return {
        "LACP": pad(mac("01:80:c2:00:00:02") + src + b"\x88\x09" + b"\x01\x01\x01\x14" + bytes(106), tag),
        "LLDP": pad(mac("01:80:c2:00:00:0e") + src + b"\x88\xcc" + bytes.fromhex("0207046a6a6a6a6a6a"), tag),
        "STP": pad(mac("01:80:c2:00:00:00") + src + struct.pack("!H", len(llc_stp) + len(tag)) + llc_stp, tag),
        "802.1X": pad(mac("01:80:c2:00:00:03") + src + b"\x88\x8e" + bytes.fromhex("01010000"), tag),
        "802.1Q": pad(dst + src + bytes.fromhex("81000064" "88b5"), tag),
        "QinQ": pad(dst + src + bytes.fromhex("88a8012c" "81000064" "88b5"), tag),
        "MPLS": pad(dst + src + bytes.fromhex("8847" "000641ff") + bytes.fromhex("4500"), tag),
        "broadcast": pad(b"\xff" * 6 + src + b"\x88\xb5", tag),
        "multicast": pad(mac("01:00:5e:01:02:03") + src + b"\x88\xb5", tag),
        "unicast": pad(dst + src + b"\x88\xb5", tag),
        "jumbo": dst + src + b"\x88\xb5" + tag + bytes(jumbo - len(tag)),
    }


def pause(src: bytes, tag: bytes) -> bytes:
    return pad(mac("01:80:c2:00:00:01") + src + b"\x88\x08" + b"\x00\x01\xff\xff", tag)


def drops(host) -> dict[str, int]:
    return {k: int(v) for k, v in ok(host, "stats")[1][1:]}


@pytest.mark.parametrize("encap", ["udp", "etherip"])
def test_every_frame_crosses_ports_unchanged(lab, make_hosts, encap):
    """Two hosts, a VM behind a port on each, no bridge, MTU 9000: each frame of the
    matrix arrives byte-identical on the other side; a pause frame is dropped and
    counted.  One VM's interface exists before the vnet, the other's appears after."""
    h1, h2 = make_hosts(2)
    a = port_vm(lab, "a", h1, "pa", "10.97.0.1/24", mtu=9000)
    ok(h1, "vnet_add", vnet(97, mtu=9000, ports=("pa",), encapsulation=encap))
    ok(h2, "vnet_add", vnet(97, mtu=9000, ports=("pb",), encapsulation=encap))
    assert ports(h2)["pb"]["state"] == "waiting"
    b = port_vm(lab, "b", h2, "pb", "10.97.0.2/24", mtu=9000)
    for h, name in ((h1, "pa"), (h2, "pb")):
        p = wait_state(h, name, "attached")
        assert int(p["ifindex"]) > 0
        out = lab.run(h.host, ["ip", "-d", "link", "show", name], check=True).stdout
        assert "mtu 9000" in out and "promiscuity 1" in out and ",UP" in out, out
        # the vnet device is up, on no bridge, with the vnet's MTU
        out = lab.run(h.host, ["ip", "link", "show", "vnif97"], check=True).stdout
        assert "mtu 9000" in out and ",UP" in out and "master" not in out, out
    lab.wait_ping(a, b.ip, timeout=30)
    lab.run(a, ["ping", "-c", "2", "-M", "do", "-s", str(9000 - 28), b.ip], check=True, timeout=60)

    before = drops(h1).get("pause-frame", 0)
    cap = Frames(lab, b)
    try:
        tag = b"vnet-ports-matrix"
        sent = matrix(mac(a.mac), mac(b.mac), tag, 9000)
        assert len(sent["jumbo"]) == 9014
        send(lab, a, [pause(mac(a.mac), tag)] + list(sent.values()))
        got = cap_wait(cap, sent)
    finally:
        cap.stop()
    for name, frame in sent.items():
        assert frame in got, f"{name}: not received as sent"
    assert not [f for f in cap.frames() if f[12:14] == b"\x88\x08"], "a pause frame crossed"
    wait_until("pause-frame counted", lambda: drops(h1).get("pause-frame", 0) > before)
    p = ports(h1)["pa"]
    assert int(p["rx_packets"]) >= len(sent) and int(p["tx_packets"]) > 0, p


def cap_wait(cap: Frames, sent: dict[str, bytes]) -> list[bytes]:
    return wait_until("every frame of the matrix",
                      lambda: (f := cap.frames()) and all(x in f for x in sent.values()) and f)


def test_local_switching_between_ports_and_bridge(lab, make_hosts):
    """Two ports and a bridge VM of one vnet on one host reach each other, and nothing
    a VM sends comes back to it."""
    (h,) = make_hosts(1)
    a = port_vm(lab, "a", h, "pa", "10.97.0.1/24")
    b = port_vm(lab, "b", h, "pb", "10.97.0.2/24")
    ok(h, "vnet_add", vnet(97, bridge="vnet97", ports=("pa", "pb")))
    c = lab.vm("c", h.host, "vnet97", "10.97.0.3/24")
    cap = Frames(lab, a)
    try:
        lab.wait_ping(a, b.ip, timeout=30)
        lab.wait_ping(a, c.ip, timeout=30)
        lab.wait_ping(b, c.ip, timeout=30)
        lab.run(a, ["ping", "-c", "3", "-b", "10.97.0.255"], timeout=30)
    finally:
        cap.stop()
    echoed = [f for f in cap.frames() if f[6:12] == mac(a.mac)]
    assert not echoed, f"{len(echoed)} frames a sent came back to it"
    # The vif table knows the ports' MACs as local ones.
    vifs = {dict(r[1:])["vmac"] for r in ok(h, "vifs")[1:]}
    assert {a.mac, b.mac, c.mac} <= vifs, vifs


def test_ports_follow_their_interfaces(lab, make_hosts):
    """The VM's veth deleted and made again with the same name (a container restart),
    or renamed away and back: the port waits, then traffic resumes with no command."""
    h1, h2 = make_hosts(2)
    a = port_vm(lab, "a", h1, "pa", "10.97.0.1/24")
    b = port_vm(lab, "b", h2, "pb", "10.97.0.2/24")
    ok(h1, "vnet_add", vnet(97, ports=("pa",)))
    ok(h2, "vnet_add", vnet(97, ports=("pb",)))
    lab.wait_ping(a, b.ip, timeout=30)
    first = wait_state(h2, "pb", "attached")

    lab.remove(b)
    wait_state(h2, "pb", "waiting")
    assert ports(h2)["pb"]["ifindex"] == "0"
    b = port_vm(lab, "b", h2, "pb", "10.97.0.2/24", mac=b.mac)
    again = wait_state(h2, "pb", "attached")
    assert again["ifindex"] != first["ifindex"]
    lab.wait_ping(a, b.ip, timeout=30)
    # Attached by the module alone: still no IPv6 address of the host's on it (an
    # interface that comes up gets its link-local address at once, unless a slave).
    out = lab.run(h2.host, ["ip", "-6", "-o", "addr", "show", "dev", "pb"], check=True).stdout
    assert not out.strip(), f"the host has IPv6 on its port: {out}"

    # Linux renames only an interface that is down; the port brings it up again.
    lab.run(h1.host, ["ip", "link", "set", "pa", "down"], check=True)
    lab.run(h1.host, ["ip", "link", "set", "pa", "name", "px"], check=True)
    wait_state(h1, "pa", "waiting")
    out = lab.run(h1.host, ["ip", "-d", "link", "show", "px"], check=True).stdout
    assert "promiscuity 0" in out, out  # released
    lab.run(h1.host, ["ip", "link", "set", "px", "name", "pa"], check=True)
    wait_state(h1, "pa", "attached")
    lab.wait_ping(a, b.ip, timeout=30)

    ok(h1, "port_del", VnetId.parse("97"), "pa")
    assert "pa" not in ports(h1)
    out = lab.run(h1.host, ["ip", "-d", "link", "show", "pa"], check=True).stdout
    assert "promiscuity 0" in out and ",UP" in out, out  # left in place


def test_unload_with_ports_attached_is_clean(lab, make_hosts):
    """Unloading the module with ports attached and traffic flowing detaches them: the
    interfaces stay, free for anyone (a bridge takes them).  The module keeps nothing
    by itself: loaded again, it has no vnets and no ports (bringing them back is the
    hook's job)."""
    h1, h2 = make_hosts(2)
    a = port_vm(lab, "a", h1, "pa", "10.97.0.1/24")
    b = port_vm(lab, "b", h2, "pb", "10.97.0.2/24")
    ok(h1, "vnet_add", vnet(97, ports=("pa",)))
    ok(h2, "vnet_add", vnet(97, ports=("pb", "pwait")))
    lab.wait_ping(a, b.ip, timeout=30)
    traffic = lab.popen(a, ["ping", "-q", "-i", "0.002", b.ip], stdout=subprocess.DEVNULL)
    try:
        loader.rmmod()
    finally:
        traffic.terminate()
        traffic.wait(10)
    assert not kmod.module_loaded()
    try:
        for h, name in ((h1, "pa"), (h2, "pb")):
            out = lab.run(h.host, ["ip", "-d", "link", "show", name], check=True).stdout
            assert "promiscuity 0" in out, out
            lab.run(h.host, ["ip", "link", "add", "brx", "type", "bridge"], check=True)
            lab.run(h.host, ["ip", "link", "set", name, "master", "brx"], check=True)
            lab.run(h.host, ["ip", "link", "del", "brx"], check=True)
    finally:
        loader.insmod(VNET_KO)
    for h in (h1, h2):
        ok(h, "set_address", h.ip)
        assert ok(h, "ports") == [] and ok(h, "vnets") == []


def test_bad_input_is_refused_and_nothing_half_made(lab, make_hosts):
    (h,) = make_hosts(1)
    vid = VnetId.parse("97")
    lab.run(h.host, ["ip", "link", "add", "br7", "type", "bridge"], check=True)
    lab.run(h.host, ["ip", "link", "add", "pm", "type", "veth", "peer", "name", "pm2"], check=True)
    lab.run(h.host, ["ip", "link", "set", "pm", "master", "br7"], check=True)
    lab.run(h.host, ["ip", "link", "add", "pip", "type", "veth", "peer", "name", "pip2"], check=True)
    lab.run(h.host, ["ip", "addr", "add", "192.0.2.1/24", "dev", "pip"], check=True)
    lab.run(h.host, ["ip", "link", "add", "pok", "type", "veth", "peer", "name", "pok2"], check=True)

    # a port with a master, in the config: nothing is made, pok is left alone
    e = refused(h, "vnet_add", vnet(97, ports=("pok", "pm")))
    assert e.code == "EBUSY" and "pm" in e.message and "br7" in e.message, e.message
    assert ok(h, "vnets") == [] and ok(h, "ports") == []
    assert "promiscuity 0" in lab.run(h.host, ["ip", "-d", "link", "show", "pok"], check=True).stdout

    for mtu in (67, 65001):
        with pytest.raises(ConfigError, match=f"{mtu}.*68 to 65000"):
            vnet(97, mtu=mtu)
    # the module itself refuses it too
    e = call_raw_mtu(h, 65001)
    assert e.code == "EINVAL", e.message
    assert ok(h, "vnets") == []

    e = refused(h, "port_add", vid, "pok")
    assert e.code == "ENOENT" and str(vid) in e.message, e.message

    ok(h, "vnet_add", vnet(97, bridge="vnet97", ports=("pok",)))
    ok(h, "vnet_add", vnet(98, bridge="vnet98"))
    vid98 = VnetId.parse("98")
    for ifname, code, why in (("pm", "EBUSY", "br7"), ("br7", "EBUSY", "bridge"), ("pip", "EBUSY", "192.0.2.1"),
                              ("pok", "EEXIST", str(vid)), ("vnif97", "EEXIST", "vnet device"),
                              ("vnet97", "EEXIST", "bridge of vnet"), ("bad/name", "EINVAL", "'/'")):
        e = refused(h, "port_add", vid98, ifname)
        assert e.code == code and ifname in e.message and why in e.message, (ifname, e.code, e.message)
    e = refused(h, "port_del", vid98, "pok")
    assert e.code == "ENOENT" and "pok" in e.message, e.message
    assert list(ports(h)) == ["pok"]
    # the module's own refusal, had the client not checked first
    e = call_raw_port(h, vid98, "pm")
    assert e.code == "EBUSY" and "master" in e.message, e.message
    ok(h, "vnet_del", vid)
    ok(h, "vnet_del", vid98)
    assert ok(h, "ports") == []
    assert "promiscuity 0" in lab.run(h.host, ["ip", "-d", "link", "show", "pok"], check=True).stdout


def _raw(host, cmd: int, attrs: list) -> DatapathError:
    def run() -> None:
        with kmod.KmodClient() as c:
            try:
                c._call(cmd, attrs, "raw request")
                out = None
            except DatapathError as e:
                out = [e.code, e.message]
        print(json.dumps(out))

    code, out, err = run_in_namespace(host.host.ns, run, timeout=60)
    assert code == 0, err
    found = json.loads(out)
    assert found is not None, "the module took it"
    return DatapathError(*found)


def call_raw_mtu(host, mtu: int) -> DatapathError:
    return _raw(host, VNET_CMD_VNET_ADD, [["VNET_A_ID", VnetId.parse("97").packed], ["VNET_A_IFNAME", "vnif97"],
                                          ["VNET_A_MTU", mtu]])


def call_raw_port(host, vid: VnetId, ifname: str) -> DatapathError:
    return _raw(host, VNET_CMD_PORT_ADD, [["VNET_A_ID", vid.packed], ["VNET_A_IFNAME", ifname]])


# -- LACP: Linux bonding in 802.3ad mode across two vnets ----------------------------------

def bond_vm(lab, name: str, host, address: str):
    """A VM with eth0 and eth1 (far ends p<name>0, p<name>1) in an 802.3ad bond."""
    vm = port_vm(lab, name, host, f"p{name}0", "192.0.2.9/32")
    link = Link.create(vm.ns, "eth1", host.host.ns, f"p{name}1")
    lab.links.append(link)
    assert link.intf2.name == f"p{name}1"
    for argv in (["ip", "addr", "flush", "dev", "eth0"],
                 ["ip", "link", "add", "bond0", "type", "bond", "mode", "802.3ad", "lacp_rate", "fast",
                  "miimon", "100"],
                 ["ip", "link", "set", "eth0", "down"], ["ip", "link", "set", "eth0", "master", "bond0"],
                 ["ip", "link", "set", "eth1", "down"], ["ip", "link", "set", "eth1", "master", "bond0"],
                 ["ip", "link", "set", "bond0", "up"], ["ip", "addr", "add", address, "dev", "bond0"]):
        lab.run(vm, argv, check=True)
    return vm


def bonding(lab, vm) -> dict:
    """/proc/net/bonding/bond0: the bond's MAC and each slave's aggregator and partner."""
    text = lab.run(vm, ["cat", "/proc/net/bonding/bond0"], check=True).stdout
    out = {"system": re.search(r"System MAC address: (\S+)", text)[1], "slaves": {}}
    for part in text.split("Slave Interface: ")[1:]:
        name = part.split()[0]
        agg = re.search(r"Aggregator ID: (\d+)", part)
        partner = re.search(r"details partner lacp pdu:.*?system mac address: (\S+)", part, re.S)
        out["slaves"][name] = {"aggregator": agg and agg[1], "partner": partner and partner[1],
                               "mii": re.search(r"MII Status: (\S+)", part)[1]}
    return out


def aggregated(lab, vm, other, slaves: tuple[str, ...]) -> bool:
    b = bonding(lab, vm)
    got = [b["slaves"].get(s) for s in slaves]
    return (all(s and s["partner"] == other_mac(lab, other) for s in got)
            and len({s["aggregator"] for s in got}) == 1)


def other_mac(lab, vm) -> str:
    return bonding(lab, vm)["system"]


def test_lacp_bond_across_two_vnets(lab, make_hosts):
    """Linux bonding in 802.3ad mode in two VMs on two hosts, each VM with one link on
    vnet 97 and one on vnet 98 (ports, no bridge): both slaves end up in one aggregator
    with the partner's system MAC, traffic flows, and deleting vnet 98 leaves the bond
    working on the other link."""
    h1, h2 = make_hosts(2)
    a = bond_vm(lab, "a", h1, "10.97.0.1/24")
    b = bond_vm(lab, "b", h2, "10.97.0.2/24")
    for h, vm in ((h1, "a"), (h2, "b")):
        ok(h, "vnet_add", vnet(97, ports=(f"p{vm}0",)))
        ok(h, "vnet_add", vnet(98, ports=(f"p{vm}1",)))
    both = ("eth0", "eth1")
    wait_until("both slaves of a in one aggregator with b", lambda: aggregated(lab, a, b, both), 120)
    wait_until("both slaves of b in one aggregator with a", lambda: aggregated(lab, b, a, both), 120)
    lab.wait_ping(a, "10.97.0.2", timeout=30)
    lab.run(a, ["ping", "-c", "20", "-i", "0.05", "10.97.0.2"], check=True, timeout=60)
    for h in (h1, h2):
        ok(h, "vnet_del", VnetId.parse("98"))
    # eth1's partner is gone: eth1 leaves the aggregator, eth0 carries on.
    wait_until("a's bond on eth0 alone",
               lambda: (s := bonding(lab, a)["slaves"]) and s["eth0"]["aggregator"] != s["eth1"]["aggregator"]
               and aggregated(lab, a, b, ("eth0",)), 120)
    lab.wait_ping(a, "10.97.0.2", timeout=60)
    lab.run(a, ["ping", "-c", "20", "-i", "0.05", "10.97.0.2"], check=True, timeout=60)
