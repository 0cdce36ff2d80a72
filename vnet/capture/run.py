"""`vn capture` put together: the vnet and its points checked, the filter compiled,
the datapath asked for its endpoints' frames, all before the output is opened."""
from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute

from vnet.capture import pcapng
from vnet.capture.bpf import SNAPLEN, Matcher, Program, compile_filter
from vnet.capture.points import Point, select_points, vnet_points
from vnet.capture.session import STREAM_MSG, CaptureError, EndpointFeed, Output, Result, Session
from vnet.capture.underlay import Opener, underlay_expression
from vnet.control.controller import Controller
from vnet.control.datapath import Datapath
from vnet.control.protocol import resolve_socket
from vnet.errors import VnetError
from vnet.host import netdev
from vnet.model import keys
from vnet.model.endpoint import EndpointSpec


@dataclass(frozen=True)
class Request:
    vnet: str
    write: str | None = None
    count: int | None = None
    duration: float | None = None
    points: tuple[str, ...] = ()
    underlay: bool = False
    decrypt: bool = False
    expression: str = ""
    host_name: str | None = None
    snaplen: int = SNAPLEN


def underlay_of(ctrl: Controller) -> tuple[str, str]:
    """(address, interface) vnet traffic leaves from: the address kept in the state,
    else the one vnetd and the module would pick (vnet.host.netdev.pick_address)."""
    kept = ctrl.store.load().settings.get("address")
    with IPRoute() as ipr:
        found = {addr: ifname for ifname, addr, _, _ in netdev.ipv4_addresses(ipr)}
        try:
            address = kept if kept in found else netdev.pick_address(ipr, None, None)
        except VnetError as e:
            raise CaptureError(f"cannot tell this host's underlay address: {e}") from None
    return address, found[address]


def capture(ctrl: Controller, req: Request, say) -> Result:
    """Run one capture; `say` gets the lines for stderr."""
    cfg = ctrl.find_vnet(req.vnet)
    dp = ctrl.datapath
    vshort = cfg.id.short or str(cfg.id)
    host = req.host_name or socket.gethostname()
    address, underlay_if = underlay_of(ctrl)
    if req.decrypt and not req.underlay:
        raise CaptureError("--decrypt opens the sealed packets of --underlay; add --underlay")
    if req.decrypt and cfg.security != "conf":
        raise CaptureError(f"--decrypt: vnet {cfg.id} is not a conf vnet (security {cfg.security}): "
                           "its packets are not encrypted")
    opener = None
    if req.decrypt:
        paths = cfg.key_files or (str(keys.default_path(ctrl.state_dir, cfg.id)),)
        opener = Opener(keys.load_keys(list(paths)))
    expression = req.expression
    if req.underlay:
        if req.points:
            raise CaptureError("-i and --underlay do not go together: --underlay captures on the "
                               f"underlay interface ({underlay_if})")
        outer = underlay_expression(cfg.id)
        expression = f"({outer}) and ({expression})" if expression else outer
        points = [Point(f"underlay:{underlay_if}", f"underlay interface {underlay_if} (encapsulated packets "
                        f"of vnet {vshort})", ifname=underlay_if)]
    else:
        points = select_points(vnet_points(dp, cfg), req.points)
    program = compile_filter(expression, req.snaplen)
    interfaces: list[tuple[Point | None, pcapng.Interface]] = [
        (p, pcapng.Interface(f"{host}/{vshort}/{p.name}",
                             f"{p.what} of vnet {cfg.id} on host {host}, underlay {address}", req.snaplen))
        for p in points]
    if opener is not None:
        interfaces.append((None, pcapng.Interface(
            f"{host}/{vshort}/opened:{underlay_if}",
            f"frames opened from the sealed packets of vnet {cfg.id} on {underlay_if} with the key this "
            f"host holds, on host {host}, underlay {address}", req.snaplen)))
    comment = (f"vn capture of vnet {cfg.id} ({vshort}) on host {host}, underlay {address}, "
               f"datapath {dp.kind}; filter: {req.expression or '(none)'}")
    if req.underlay:
        comment += "; encapsulated packets on the underlay"
    if opener is not None:
        comment += "; sealed frames opened with the vnet's key (--decrypt) and written decrypted"

    endpoints = [p.endpoint for p in points if p.endpoint]

    def vnetd_stream(*items: list) -> EndpointFeed:
        """vnetd's capture stream of this vnet (vnet/datapath/vnetd/capture.py)."""
        command = ["capture", ["vnet", str(cfg.id)], ["filter", req.expression, program.packed().hex()],
                   ["snaplen", str(req.snaplen)], *items]
        return EndpointFeed.from_vnetd(resolve_socket(ctrl.socket_path, ctrl.state_dir), command)

    def feed() -> EndpointFeed:
        if dp.kind == "kmod":
            return EndpointFeed(module_messages(dp, cfg.id.packed, endpoints, program, req.snaplen),
                                "the vnet module")
        return vnetd_stream(*(["endpoint", *words] for words in endpoints))

    if dp.kind != "kmod" and any(p.name == "tunnel" for p in points):
        # vnetd's fast path sends frames out before the tap's packet taps see them:
        # this stream keeps the vnet on the slow path until the capture ends.
        vnetd_stream(["tunnel"])
    output = Output(req.write)
    session = Session(output, comment, interfaces, program, req.snaplen, feed, opener)
    if opener is not None:
        say("opening the sealed packets with the vnet's key: the capture holds them decrypted")
    say(f"capturing vnet {vshort} on {', '.join(p.name for p in points)}"
        + (f" (filter: {req.expression})" if req.expression else ""))
    result = session.run(req.count, req.duration)
    for note in result.notes:
        say(note)
    dropped = f"{result.kernel_dropped} dropped by the kernel"
    if session.feed is not None:
        dropped += (f", {result.stream_dropped} by vnetd" if dp.kind != "kmod" else
                    f", {result.stream_dropped} overruns of the module's stream (and its capture-lost counter)")
    say(f"{result.written} packets written to {output.name} ({result.stopped_by}); {dropped}")
    return result


def module_messages(dp: Datapath, vid: bytes, endpoints: list[tuple[str, ...]], program: Program,
                    snaplen: int) -> Callable[[Callable[[], None]], Iterator[bytes]]:
    """The module's endpoint frames of vnet `vid` at `endpoints` (their order is their
    points' in the capture) that `program` matches, as vnetd's stream gives them:
    the module sends every endpoint's frames and the filter runs here, as in vnetd."""
    index = {EndpointSpec.parse(list(words)): i for i, words in enumerate(endpoints)}

    def messages(started: Callable[[], None]) -> Iterator[bytes]:
        matches, pack = Matcher(program).matches, STREAM_MSG.pack
        for f in dp.endpoint_frames(started):
            point = index.get(f.endpoint) if f.vnet == vid else None
            if point is not None and matches(f.frame):
                yield pack(f.ts, point, f.outbound, f.overruns) + f.frame[:snaplen]

    return messages
