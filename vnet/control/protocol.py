"""vnetd's control channel: S-expression commands over a root-only Unix socket.

A client writes one or more commands, shuts down its sending side, and reads one
reply per command until EOF: `(ok RECORD...)`, or `(error (errno NAME) (message
TEXT))` after which the remaining commands are not run (the original stopped at the
first error too, but never told the caller).

A request of one stream command (`vn monitor`, `vn capture`) is answered by a stream
instead: messages of a 4-byte big-endian length and a payload, the first being the
reply that opens it (or says why not), until either side closes (`stream`).
"""
from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import sxp
from vnet.control.datapath import Datapath, Record
from vnet.control.events import MacChange
from vnet.errors import DatapathError
from vnet.host.privilege import user_namespace_note
from vnet.model.addr import format_mac
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointSpec
from vnet.model.linkctl import LinkControl
from vnet.model.vnetid import VnetId

SOCKET_ENV = "VNET_SOCKET"
SOCKET_NAME = "vnetd.sock"
MAX_REQUEST = 1 << 20
TIMEOUT = 10.0
#: The length prefix of each message on a stream (frame_message).
_LENGTH = struct.Struct("!I")


def resolve_socket(option: str | None, state_dir: Path) -> Path:
    """--socket, else $VNET_SOCKET, else vnetd.sock in the state directory, so that one
    setting (the state directory) selects a whole simulated host."""
    if option:
        return Path(option)
    env = os.environ.get(SOCKET_ENV)
    if env:
        return Path(env)
    return Path(state_dir) / SOCKET_NAME


def not_running(path: Path) -> tuple[str, str]:
    """Why no vnetd answers on `path`, and what starting one does about it: a socket
    file that refuses connections was left by a vnetd that did not exit (kill -9, a
    crash), and a new vnetd replaces it."""
    if path.exists():
        return (f"{path} is a stale control socket: the vnetd that made it is gone",
                " (it replaces the stale socket)")
    return f"no control socket at {path}", ""


def ok_reply(records: list[Record]) -> sxp.Value:
    return ["ok"] + records


def error_reply(err: DatapathError) -> sxp.Value:
    return ["error", ["errno", err.code], ["message", err.message]]


def encode_replies(replies: list[sxp.Value]) -> bytes:
    return "".join(sxp.show(r) + "\n" for r in replies).encode()


def frame_message(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


def _connect(path: Path, commands: list[sxp.Value], timeout: float | None) -> socket.socket:
    """A connection to vnetd that has sent `commands` and shut down its sending side."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        try:
            s.sendall("".join(sxp.show(c) + "\n" for c in commands).encode())
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # vnetd answered and hung up before reading (it refused us): read why
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        why, fix = not_running(path)
        raise DatapathError(
            "ENOENT", f"vnetd is not running ({why}); start it with 'vnetd'{fix}, or select the "
            "host with --state-dir") from None
    except PermissionError:
        s.close()
        raise DatapathError("EPERM", f"permission denied on {path}: vn must run as root"
                            f"{user_namespace_note()}") from None
    except OSError as e:
        s.close()
        raise DatapathError.from_os_error(e, f"cannot connect to vnetd on {path}") from None
    return s


def _records(reply: sxp.Value) -> list[Record]:
    """The records of an `(ok ...)` reply; an `(error ...)` reply is raised."""
    if isinstance(reply, list) and reply and reply[0] == "ok":
        return list(reply[1:])
    if isinstance(reply, list) and reply and reply[0] == "error":
        raise DatapathError(str(sxp.child_value(reply, "errno", "EIO")),
                            str(sxp.child_value(reply, "message", "unknown error")))
    raise DatapathError("EPROTO", f"unexpected reply from vnetd: {sxp.show(reply)}")


def _parse_replies(data: bytes, path: Path) -> list[sxp.Value]:
    try:
        return sxp.parse(data.decode(), source=str(path))
    except (sxp.SxpError, UnicodeDecodeError) as e:
        raise DatapathError("EPROTO", f"unreadable reply from vnetd: {e}") from None


def request(path: Path, commands: list[sxp.Value], timeout: float = TIMEOUT) -> list[list[Record]]:
    """Send commands to vnetd; returns the records of each, or raises the first error."""
    s = _connect(path, commands, timeout)
    chunks = []
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except socket.timeout:
        raise DatapathError("ETIMEDOUT", f"vnetd did not answer within {timeout:g} s on {path}") from None
    except ConnectionResetError as e:
        # vnetd answered and closed without reading our commands (it refused us): the
        # kernel reports the reset after the answer, which says why.
        if not chunks:
            raise DatapathError.from_os_error(e, f"lost the connection to vnetd on {path}") from None
    except OSError as e:
        raise DatapathError.from_os_error(e, f"lost the connection to vnetd on {path}") from None
    finally:
        s.close()
    results = [_records(reply) for reply in _parse_replies(b"".join(chunks), path)]
    if len(results) != len(commands):
        raise DatapathError("EPROTO", f"vnetd answered {len(results)} of {len(commands)} commands")
    return results


def stream(path: Path, command: sxp.Value, timeout: float = TIMEOUT,
           opened: Callable[[], None] | None = None) -> Iterator[bytes]:
    """Open a stream with `command` and yield its messages until vnetd ends it.  The
    opening reply must come within `timeout`; the messages after it may take any time.
    An error reply is raised before anything is yielded; `opened` is called once the
    stream is open (nothing sent from then on is missed)."""
    s = _connect(path, [command], timeout)
    try:
        reader = s.makefile("rb")
        first = _read_message(reader, path)
        if first is None:
            raise DatapathError("EPROTO", f"vnetd closed the stream on {path} without a reply")
        for reply in _parse_replies(first, path):
            _records(reply)
        if opened is not None:
            opened()
        s.settimeout(None)
        while (msg := _read_message(reader, path)) is not None:
            yield msg
    except socket.timeout:
        raise DatapathError("ETIMEDOUT", f"vnetd did not answer within {timeout:g} s on {path}") from None
    finally:
        s.close()


def _read_message(reader, path: Path) -> bytes | None:
    """One framed message, or None at a clean end of the stream."""
    try:
        head = reader.read(_LENGTH.size)
        if not head:
            return None
        if len(head) < _LENGTH.size:
            raise DatapathError("EPROTO", f"the stream from vnetd on {path} ended inside a message")
        (n,) = _LENGTH.unpack(head)
        body = reader.read(n)
    except socket.timeout:
        raise
    except OSError as e:
        raise DatapathError.from_os_error(e, f"lost the connection to vnetd on {path}") from None
    if len(body) < n:
        raise DatapathError("EPROTO", f"the stream from vnetd on {path} ended inside a message")
    return body


class VnetdClient(Datapath):
    """The Datapath interface, carried out by a running vnetd."""

    kind = "vnetd"

    def __init__(self, path: Path, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    def _call(self, command: sxp.Value) -> list[Record]:
        return request(self.path, [command], self.timeout)[0]

    def available(self) -> bool:
        return self.path.exists()

    def vnet_add(self, cfg: VnetConfig) -> None:
        self._call(["vnet.add"] + cfg.to_sxp()[1:])

    def vnet_del(self, vid: VnetId) -> None:
        self._call(["vnet.del", ["id", str(vid)]])

    def vnet_keys(self, vid: VnetId, key_files: tuple[str, ...]) -> None:
        self._call(["vnet.keys", ["id", str(vid)], ["key-file", *key_files]])

    def vnets(self) -> list[Record]:
        return self._call(["vnet.list"])

    def port_add(self, vid: VnetId, ifname: str) -> None:
        self._call(["port.add", ["vnet", str(vid)], ["ifname", ifname]])

    def port_del(self, vid: VnetId, ifname: str) -> None:
        self._call(["port.del", ["vnet", str(vid)], ["ifname", ifname]])

    def port_set(self, vid: VnetId, ifname: str, link: LinkControl) -> None:
        # The options set; one left out is none, so vnetd holds exactly `link`.
        self._call(["port.set", ["vnet", str(vid)], ["ifname", ifname], *link.to_sxp()])

    def ports(self) -> list[Record]:
        return self._call(["port.list"])

    def endpoint_add(self, vid: VnetId, spec: EndpointSpec) -> None:
        self._call(["endpoint.add", ["vnet", str(vid)], spec.to_sxp()])

    def endpoint_del(self, vid: VnetId, spec: EndpointSpec) -> None:
        self._call(["endpoint.del", ["vnet", str(vid)], spec.to_sxp()])

    def endpoints(self) -> list[Record]:
        return self._call(["endpoint.list"])

    def vif_add(self, vid: VnetId, mac: bytes) -> None:
        self._call(["vif.add", ["vnet", str(vid)], ["vmac", format_mac(mac)]])

    def vif_del(self, vid: VnetId, mac: bytes) -> None:
        self._call(["vif.del", ["vnet", str(vid)], ["vmac", format_mac(mac)]])

    def vifs(self) -> list[Record]:
        return self._call(["vif.list"])

    def peer_add(self, addr: str, port: int) -> None:
        self._call(["peer.add", ["addr", addr], ["port", str(port)]])

    def peer_del(self, addr: str) -> None:
        self._call(["peer.del", ["addr", addr]])

    def peers(self) -> list[Record]:
        return self._call(["peer.list"])

    def varp_flush(self) -> None:
        self._call(["varp.flush"])

    def varp(self) -> list[Record]:
        return self._call(["varp.list"])

    def set_mcaddr(self, addr: str) -> None:
        self._call(["varp.mcaddr", ["addr", addr]])

    def stats(self) -> list[Record]:
        return self._call(["stats"])

    def mac_changes(self, opened: Callable[[], None] | None = None) -> Iterator[MacChange]:
        """vnetd's `monitor` stream."""
        for msg in stream(self.path, ["monitor"], self.timeout, opened):
            try:
                yield MacChange.from_json(json.loads(msg))
            except (ValueError, KeyError, TypeError) as e:
                raise DatapathError("EPROTO", f"unreadable event from vnetd on {self.path}: {e}") from None
