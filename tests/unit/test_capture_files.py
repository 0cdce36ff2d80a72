"""vn capture's pieces that need no root: the pcapng writer read back by tshark, and
filters compiled by the real libpcap, run on frames by pcap_offline_filter as vnetd
runs them on its socket endpoints' frames."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from vnet.capture import pcapng
from vnet.capture.bpf import FilterError, Matcher, Program, compile_filter
from vnet.capture.underlay import underlay_expression
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire

ICMP = bytes.fromhex("020000000002" "020000000001" "0800"
                     "4500001c00004000400100000a6100010a610002" "0800f7ff00000000")
ARP = bytes.fromhex("ffffffffffff" "020000000001" "0806") + bytes(28)


def test_tshark_reads_names_comments_and_directions(tmp_path):
    if not shutil.which("tshark"):
        pytest.skip("needs tshark (setup.sh installs it)")
    data = pcapng.section_header("vn capture of vnet 97 on host h1", "Linux", "vn capture")
    data += pcapng.interface_block(pcapng.Interface("h1/97/tunnel", "vnet device vnif97"))
    data += pcapng.interface_block(pcapng.Interface("h1/97/port:eth1", "port eth1", snaplen=20))
    data += pcapng.packet_block(0, 1_700_000_000_123_456_789, ICMP, 262144, pcapng.OUTBOUND, "first")
    data += pcapng.packet_block(1, 1_700_000_000_223_456_789, ARP, 20, pcapng.INBOUND)
    path = tmp_path / "t.pcapng"
    path.write_bytes(data)
    cp = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|",
                         "-e", "frame.interface_name", "-e", "frame.interface_description",
                         "-e", "frame.p2p_dir", "-e", "frame.comment", "-e", "frame.len",
                         "-e", "frame.cap_len", "-e", "frame.time_epoch", "-e", "icmp.type"],
                        capture_output=True, text=True, check=False)
    assert cp.returncode == 0, cp.stderr
    assert [line.split("|") for line in cp.stdout.splitlines()] == [
        ["h1/97/tunnel", "vnet device vnif97", "0", "first", str(len(ICMP)), str(len(ICMP)),
         "1700000000.123456789", "8"],
        ["h1/97/port:eth1", "port eth1", "1", "", str(len(ARP)), "20", "1700000000.223456789", ""]]


def test_a_filter_runs_where_the_frame_lies_and_a_bad_one_is_named():
    icmp = Matcher(compile_filter("icmp"))
    assert icmp.matches(ICMP) and not icmp.matches(ARP)
    assert icmp.matches(memoryview(bytearray(ICMP)))  # in place, as vnetd's receive buffer
    assert icmp.matches(memoryview(ICMP))  # read-only: looked at through a copy
    program = compile_filter("arp")
    assert Matcher(Program.unpacked("arp", program.packed())).matches(ARP)
    with pytest.raises(FilterError, match=r"capture filter 'icmp and nonsense' does not compile: .+"):
        compile_filter("icmp and nonsense")


def test_the_underlay_filter_takes_only_its_vnets_packets():
    v97, v98 = VnetId.parse("97"), VnetId.parse("98")
    outer = Matcher(compile_filter(underlay_expression(v97)))

    def udp(payload: bytes) -> bytes:
        ip = wire.ipv4_header(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), wire.IPPROTO_UDP,
                              wire.UDP_HEADER_LEN + len(payload))
        return ICMP[:12] + b"\x08\x00" + ip + wire.udp_header(len(payload)) + payload

    def raw(payload: bytes) -> bytes:
        ip = wire.ipv4_header(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), wire.IPPROTO_ETHERIP, len(payload))
        return ICMP[:12] + b"\x08\x00" + ip + payload

    for v, want in ((v97, True), (v98, False)):
        assert outer.matches(udp(wire.vudp_prefix(v.packed) + ICMP)) is want
        assert outer.matches(raw(wire.etherip_prefix(v.packed) + ICMP)) is want
        assert outer.matches(udp(wire.pack_varp(wire.VARP_REQUEST, v.packed, bytes(6), "10.0.0.1"))) is want
        sealed = b"\x00\x05\x02\x02" + v.packed + bytes(30)
        assert outer.matches(udp(sealed)) is want and outer.matches(raw(sealed)) is want
    assert not outer.matches(ICMP)
