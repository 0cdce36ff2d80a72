"""vnetd's control channel: S-expression commands over a root-only Unix socket.

A client writes one or more commands, shuts down its sending side, and reads one
reply per command until EOF: `(ok RECORD...)`, or `(error (errno NAME) (message
TEXT))` after which the remaining commands are not run (the original stopped at the
first error too, but never told the caller).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import sxp
from vnet.control.datapath import Datapath, Record
from vnet.errors import DatapathError
from vnet.model.addr import format_mac
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointSpec
from vnet.model.vnetid import VnetId

SOCKET_ENV = "VNET_SOCKET"
SOCKET_NAME = "vnetd.sock"
MAX_REQUEST = 1 << 20
TIMEOUT = 10.0


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


def request(path: Path, commands: list[sxp.Value], timeout: float = TIMEOUT) -> list[list[Record]]:
    """Send commands to vnetd; returns the records of each, or raises the first error."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            why, fix = not_running(path)
            raise DatapathError(
                "ENOENT", f"vnetd is not running ({why}); start it with 'vnetd'{fix}, or select the "
                "host with --state-dir") from None
        except PermissionError:
            raise DatapathError("EPERM", f"permission denied on {path}: vn must run as root") from None
        except OSError as e:
            raise DatapathError.from_os_error(e, f"cannot connect to vnetd on {path}") from None
        s.sendall("".join(sxp.show(c) + "\n" for c in commands).encode())
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except socket.timeout:
        raise DatapathError("ETIMEDOUT", f"vnetd did not answer within {timeout:g} s on {path}") from None
    except OSError as e:
        raise DatapathError.from_os_error(e, f"lost the connection to vnetd on {path}") from None
    finally:
        s.close()
    try:
        replies = sxp.parse(b"".join(chunks).decode(), source=str(path))
    except (sxp.SxpError, UnicodeDecodeError) as e:
        raise DatapathError("EPROTO", f"unreadable reply from vnetd: {e}") from None
    results: list[list[Record]] = []
    for reply in replies:
        if isinstance(reply, list) and reply and reply[0] == "ok":
            results.append(list(reply[1:]))
        elif isinstance(reply, list) and reply and reply[0] == "error":
            raise DatapathError(str(sxp.child_value(reply, "errno", "EIO")),
                                str(sxp.child_value(reply, "message", "unknown error")))
        else:
            raise DatapathError("EPROTO", f"unexpected reply from vnetd: {sxp.show(reply)}")
    if len(results) != len(commands):
        raise DatapathError("EPROTO", f"vnetd answered {len(results)} of {len(commands)} commands")
    return results


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
