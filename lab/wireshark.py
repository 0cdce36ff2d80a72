"""Reading captures with tshark and the project's dissector (contrib/wireshark/vnet.lua).

The tests judge the dissector by what Wireshark itself makes of packets, so this holds
only the plumbing: a pcap writer for frames a test built or captured, and a run of
`tshark -T fields` that returns one dict of field values per packet.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterable
from pathlib import Path

DISSECTOR = Path(__file__).resolve().parent.parent / "contrib" / "wireshark" / "vnet.lua"

#: pcap link types: Ethernet frames, or bare IPv4 packets.
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101


def tshark() -> str | None:
    """The tshark command, if installed (setup.sh installs it)."""
    return shutil.which("tshark")


def write_pcap(path: Path, packets: Iterable[bytes], linktype: int = LINKTYPE_ETHERNET) -> Path:
    """A classic pcap file (microsecond timestamps, one second apart) of `packets`."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        out.writelines(struct.pack("<IIII", i, 0, len(p), len(p)) + p for i, p in enumerate(packets))
    return path


def fields(pcap: Path, names: Iterable[str], display_filter: str = "",
           dissector: Path | None = DISSECTOR) -> list[dict[str, str]]:
    """tshark's `-T fields` for each packet of `pcap` (after `display_filter`), with our
    dissector loaded (none: Wireshark alone).  A field a packet has several times
    (nested messages) comes comma-separated; a missing one is ''."""
    names = list(names)
    argv = [tshark() or "tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t",
            "-E", "occurrence=a", "-E", "aggregator=,"]
    if dissector is not None:
        argv[1:1] = ["-X", f"lua_script:{dissector}"]
    if display_filter:
        argv += ["-Y", display_filter]
    for n in names:
        argv += ["-e", n]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if r.returncode != 0 or "Lua: Error" in r.stderr or "lua_script" in r.stderr:
        raise AssertionError(f"tshark failed ({r.returncode}): {r.stderr}")
    return [dict(zip(names, line.split("\t"))) for line in r.stdout.splitlines()]
