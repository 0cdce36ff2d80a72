"""The `capture` stream: the frames of a vnet's socket endpoints, for `vn capture`.

Socket endpoints have no Linux interface to open a packet socket on, so vnetd shows
their frames itself, only while a capture is open: it taps the endpoint's attachment
(EndpointAttachment.add_tap), runs the capture's compiled filter on each frame where
it lies (vnet.capture.bpf.Matcher, libpcap's pcap_offline_filter) and copies only the
frames that match into the stream.  With no capture open the endpoints run as before.

The command: (capture (vnet ID) (filter EXPRESSION HEX) (snaplen N) (endpoint SPEC)...
[(tunnel)]) with HEX the packed BPF program and each SPEC an endpoint as `vn endpoints`
writes it.  `(tunnel)` says the capture reads the vnet's tap (the `tunnel` point): the
fast path sends its frames out before the tap's packet taps see them, so the vnet
takes the slow path while such a capture is open (doc/fastpath.md); each message is MESSAGE (below) followed by the frame, `point` the index of its
endpoint in the command and `dropped` the messages this stream has dropped so far
for a slow reader.  The first message is empty: the capture is set up.
"""
from __future__ import annotations

import struct
import time
from collections.abc import Callable

import sxp
from vnet.capture.bpf import Matcher, Program
from vnet.datapath.vnetd.endpoint import EndpointAttachment
from vnet.datapath.vnetd.server import Stream
from vnet.datapath.vnetd.tables import Tables
from vnet.errors import DatapathError, VnetError
from vnet.model.endpoint import EndpointSpec
from vnet.model.vnetid import VnetId

#: ts (ns), point, outbound (1: to the VM), dropped so far.
MESSAGE = struct.Struct("!QHBI")


def open_capture(tables: Tables, loop, hold: Callable[[bytes], Callable[[], None]], command: sxp.Value,
                 stream: Stream) -> None:
    """Tap the endpoints `command` names for `stream`, or raise DatapathError; with
    `(tunnel)`, keep the vnet off the fast path (`hold` returns what releases it)."""
    try:
        vid, program, snaplen, specs = _parse(command)
        matcher = Matcher(program)
    except (TypeError, IndexError, ValueError, VnetError) as e:
        raise DatapathError("EINVAL", f"capture: {e}") from None
    v = tables.vnets.get(vid.packed)
    if v is None:
        raise DatapathError("ENOENT", f"capture: no vnet {vid} in vnetd")
    atts: list[EndpointAttachment] = []
    for spec in specs:
        att = v.endpoints.get(spec)
        if att is None:
            raise DatapathError("ENOENT", f"capture: vnet {vid} has no endpoint ({spec})")
        atts.append(att)  # type: ignore[arg-type]
    taps = []
    for index, att in enumerate(atts):
        tap = _tap(stream, matcher, index, snaplen)
        att.add_tap(tap)
        taps.append((att, tap))

    def closed() -> None:
        for att, tap in taps:
            att.remove_tap(tap)

    stream.on_close.append(closed)
    if sxp.children(command, "tunnel"):
        stream.on_close.append(hold(vid.packed))
    # After the opening reply (sent when this returns): the capture is set up.
    loop.call_at(time.monotonic(), lambda: stream.send(b""))


def _parse(command: sxp.Value) -> tuple[VnetId, Program, int, list[EndpointSpec]]:
    vid = VnetId.parse(str(sxp.child_value(command, "vnet", "")))
    filt = sxp.children(command, "filter")[0]
    program = Program.unpacked(str(filt[1]), bytes.fromhex(str(filt[2])))
    snaplen = int(str(sxp.child_value(command, "snaplen", "262144")))
    specs = [EndpointSpec.parse(item[1:]) for item in sxp.children(command, "endpoint")]
    return vid, program, snaplen, specs


def _tap(stream: Stream, matcher: Matcher, index: int, snaplen: int):
    pack, matches, send, now = MESSAGE.pack, matcher.matches, stream.send, time.time_ns

    def tap(outbound: bool, frame) -> None:
        if matches(frame):
            send(pack(now(), index, outbound, stream.dropped) + bytes(frame[:snaplen]))

    return tap
