"""A stand-in for QEMU's socket NIC: joins a network interface to a socket in QEMU's framing.

Where a nested QEMU would be far too slow (the kernel module's tests run in an
emulated guest already), a lab VM (a namespace with a veth) plays the VM and this
program plays its QEMU: every frame the interface receives goes out on the socket,
every frame from the socket is sent out of the interface, framed exactly as QEMU's
`-netdev dgram|socket|stream` frames it (vnet.wire.qemu) and with QEMU's behaviour
around connections, which is what vnet's endpoints must live with:

    --dgram LOCAL REMOTE   bind LOCAL (SO_REUSEADDR, as QEMU), send to REMOTE, take
                           datagrams from anyone (QEMU does not filter)
    --listen ADDR          one client at a time; the listener is ignored while a
                           client is connected and used again when it leaves
    --connect ADDR         connect once at start, and fail (exit 1) if refused, as
                           `-netdev socket,connect=` does; when the connection ends
                           the link stays down, unless --reconnect SECONDS (QEMU 8.0's
                           `-netdev stream,reconnect=`) says to connect again

A stream length above QEMU's NET_BUFSIZE ends the connection, as in QEMU.  The
interface is opened with a packet socket (ETH_P_ALL, outgoing frames ignored); with
--netns it is looked up in that named namespace, while the socket stays in the
program's own.  Prints `ready` once its interface and listening or datagram socket are
open (before a --connect attempt), then `connected HOST:PORT` and `disconnected` as
they happen, for tests to wait on.

    python -m lab.qemu_socket_peer --ifname vvm --connect 127.0.0.1:6000 --reconnect 1
"""
from __future__ import annotations

import argparse
import select
import signal
import socket
import sys
import threading
import time

from lab.netns import enter_ns
from vnet.datapath.vnetd.underlay import big_buffer
from vnet.wire.qemu import ETH_HEADER, FramingError, StreamReader

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def packet_socket(ifname: str, netns: str | None) -> socket.socket:
    """A packet socket bound to `ifname`, opened in `netns` if given (on a thread
    that entered it: the socket keeps that namespace, the program keeps its own)."""
    box: dict = {}

    def body() -> None:
        try:
            if netns:
                enter_ns(netns)
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            s.bind((ifname, ETH_P_ALL))
            box["sock"] = s
        except BaseException as e:  # re-raised below
            box["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["sock"]


def say(text: str) -> None:
    print(text, flush=True)


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ep = select.epoll()
        self.pkt = packet_socket(args.ifname, args.netns)
        # The interface plays the guest's virtio queue, which never drops: a burst
        # must wait here, not be lost before QEMU's part (the socket) is reached.
        big_buffer(self.pkt)
        self.pkt.setblocking(False)
        self.ep.register(self.pkt.fileno(), select.EPOLLIN)
        self.dgram: socket.socket | None = None
        self.remote: tuple[str, int] | None = None
        self.listener: socket.socket | None = None
        self.conn: socket.socket | None = None
        self.reader = StreamReader()
        self.reconnect_at: float | None = None
        if args.dgram:
            self.dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.dgram.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.dgram.bind(hostport(args.dgram[0]))
            self.remote = hostport(args.dgram[1])
            self.dgram.setblocking(False)
            self.ep.register(self.dgram.fileno(), select.EPOLLIN)
        elif args.listen:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(hostport(args.listen))
            self.listener.listen(1)
            self.listener.setblocking(False)
            self.ep.register(self.listener.fileno(), select.EPOLLIN)
        say("ready")
        if args.connect and not self.connect() and args.reconnect is None:
            sys.exit(f"qemu_socket_peer: cannot connect to {args.connect}")

    def connect(self) -> bool:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(hostport(self.args.connect))
        except OSError:
            s.close()
            if self.args.reconnect is not None:
                self.reconnect_at = time.monotonic() + self.args.reconnect
            return False
        self.adopt(s, hostport(self.args.connect))
        return True

    def adopt(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.setblocking(True)  # QEMU writes whole frames; so do we (short ones)
        conn.settimeout(5)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn
        self.reader.reset()
        self.ep.register(conn.fileno(), select.EPOLLIN)
        if self.listener is not None:  # QEMU stops accepting while it has a client
            self.ep.unregister(self.listener.fileno())
        say(f"connected {peer[0]}:{peer[1]}")

    def disconnect(self) -> None:
        assert self.conn is not None
        self.ep.unregister(self.conn.fileno())
        self.conn.close()
        self.conn = None
        say("disconnected")
        if self.listener is not None:
            self.ep.register(self.listener.fileno(), select.EPOLLIN)
        elif self.args.reconnect is not None:
            self.reconnect_at = time.monotonic() + self.args.reconnect

    def to_vm(self, frame: bytes) -> None:
        if len(frame) < ETH_HEADER:
            return
        try:
            self.pkt.send(frame)
        except OSError:
            pass  # interface down or gone: the frame is lost, as on a NIC

    def from_vm(self, frame: bytes) -> None:
        try:
            if self.dgram is not None:
                self.dgram.sendto(frame, self.remote)
            elif self.conn is not None:
                self.conn.sendall(len(frame).to_bytes(4, "big") + frame)
        except OSError:
            if self.conn is not None:
                self.disconnect()

    def run(self) -> None:
        while True:
            timeout = -1.0
            if self.reconnect_at is not None:
                timeout = max(0.0, self.reconnect_at - time.monotonic())
            for fd, _ in self.ep.poll(timeout):
                if fd == self.pkt.fileno():
                    while True:
                        try:
                            self.from_vm(self.pkt.recv(65536))
                        except BlockingIOError:
                            break
                elif self.dgram is not None and fd == self.dgram.fileno():
                    while True:
                        try:
                            self.to_vm(self.dgram.recv(65536))
                        except BlockingIOError:
                            break
                elif self.listener is not None and fd == self.listener.fileno():
                    try:
                        conn, peer = self.listener.accept()
                    except BlockingIOError:
                        continue
                    self.adopt(conn, peer)
                elif self.conn is not None and fd == self.conn.fileno():
                    try:
                        data = self.conn.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self.disconnect()
                        continue
                    try:
                        frames = self.reader.feed(data)
                    except FramingError as e:
                        print(f"qemu_socket_peer: {e}: connection terminated", file=sys.stderr)
                        for frame in e.frames:
                            self.to_vm(frame)
                        self.disconnect()
                        continue
                    for frame in frames:
                        self.to_vm(frame)
            if self.reconnect_at is not None and time.monotonic() >= self.reconnect_at:
                self.reconnect_at = None
                self.connect()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="qemu_socket_peer", description=__doc__.split("\n\n")[0])
    p.add_argument("--ifname", required=True, help="the interface that plays the VM's NIC")
    p.add_argument("--netns", help="the named network namespace the interface is in")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dgram", nargs=2, metavar=("LOCAL", "REMOTE"))
    mode.add_argument("--listen", metavar="ADDR:PORT")
    mode.add_argument("--connect", metavar="ADDR:PORT")
    p.add_argument("--reconnect", type=float, metavar="SECONDS",
                   help="with --connect: connect again this long after a loss or a failure")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        Peer(args).run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
