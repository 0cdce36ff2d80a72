"""The boundary between control (ids, configs, state, commands) and a datapath.

`vn` and the command language are written against `Datapath`; vnetd (user space)
implements it directly, `VnetdClient` implements it by talking to a running vnetd,
and the kernel module's client will implement it over generic netlink.  Errors are
`DatapathError`s carrying an errno name, so every failure reaches the user.
"""
from __future__ import annotations

import errno
from abc import ABC, abstractmethod

from vnet.config import VnetConfig
from vnet.vnetid import VnetId

Record = list


class DatapathError(Exception):
    """A failed datapath operation: `code` is an errno name such as 'EEXIST'."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_os_error(cls, exc: OSError, what: str) -> "DatapathError":
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        return cls(name, f"{what}: {exc.strerror or exc}")


class Datapath(ABC):
    """What a vnet host can be asked to do; implemented by every datapath."""

    kind = "abstract"

    @abstractmethod
    def vnet_add(self, cfg: VnetConfig) -> None:
        """Create the vnet's device, enslave it to cfg.bridge (created if missing)."""

    @abstractmethod
    def vnet_del(self, vid: VnetId) -> None:
        """Remove the vnet's device and every vif and VARP entry of it."""

    @abstractmethod
    def vnet_keys(self, vid: VnetId, key_files: tuple[str, ...]) -> None:
        """Replace the keys of a secure vnet (send key first) in one step, so a
        rotation never leaves the vnet with no key or the wrong send key."""

    @abstractmethod
    def vnets(self) -> list[Record]: ...

    @abstractmethod
    def vif_add(self, vid: VnetId, mac: bytes) -> None: ...

    @abstractmethod
    def vif_del(self, vid: VnetId, mac: bytes) -> None: ...

    @abstractmethod
    def vifs(self) -> list[Record]: ...

    @abstractmethod
    def peer_add(self, addr: str, port: int) -> None: ...

    @abstractmethod
    def peer_del(self, addr: str) -> None: ...

    @abstractmethod
    def peers(self) -> list[Record]: ...

    @abstractmethod
    def varp_flush(self) -> None: ...

    @abstractmethod
    def varp(self) -> list[Record]: ...

    @abstractmethod
    def set_mcaddr(self, addr: str) -> None: ...

    @abstractmethod
    def stats(self) -> list[Record]: ...
