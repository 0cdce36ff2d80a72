"""Per-vnet keys: the key files of secure vnets, read only when nobody else can.

A key file holds one ``(vnet-key (id N) (secret HEX))`` record (doc/security.md).
Every message raised here names the file and never its contents: an error string
ends up in terminals, logs and bug reports, and a parse error that quoted the line
would quote the secret.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vnet.errors import DatapathError, VnetError
from vnet.model.durable import fsync_dir, make_dir
from vnet.model.vnetid import VnetId

SECRET_LEN = 32
MAX_KEYS = 2
_RECORD = re.compile(r"\s*\(\s*vnet-key\s+\(\s*id\s+(\d{1,3})\s*\)\s+\(\s*secret\s+([0-9a-fA-F]{64})\s*\)\s*\)\s*")
_FORMAT = "(vnet-key (id N) (secret 64-HEX-DIGITS)) with N from 0 to 255"


class KeyFileError(VnetError, ValueError):
    """A key file that cannot be used; the message names the file, never the key."""


@dataclass(frozen=True)
class Key:
    """A vnet key; repr() leaves the secret out so it cannot leak into a log line."""

    id: int
    secret: bytes = field(repr=False)
    path: str = ""


def default_path(state_dir: Path, vid: VnetId) -> Path:
    """Where a secure vnet's key lives when its config names no key file: ``97.key``
    for a short id, the 32 hex digits of the id otherwise (no colons in file names)."""
    return state_dir / "keys" / f"{vid.short or vid.packed.hex()}.key"


def load_key(path: str | os.PathLike) -> Key:
    """Read one key file, refusing one that group or others may read or write."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise KeyFileError(f"key file {name}: cannot open: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {name}: not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(f"key file {name}: mode {stat.S_IMODE(st.st_mode):04o} lets group or "
                               f"others read or change it; run: chmod 600 {name}")
        if st.st_uid not in (0, os.geteuid()):
            raise KeyFileError(f"key file {name}: owned by uid {st.st_uid}, not by root or this user")
        text = os.read(fd, 4096)
    finally:
        os.close(fd)
    m = _RECORD.fullmatch(text.decode("ascii", "replace"))
    if m is None or int(m.group(1)) > 255:
        raise KeyFileError(f"key file {name}: not a key file; expected {_FORMAT}")
    return Key(int(m.group(1)), bytes.fromhex(m.group(2)), name)


def load_keys(paths: Sequence[str]) -> list[Key]:
    """The keys of one vnet, send key first: one or two, with distinct ids."""
    if not 1 <= len(paths) <= MAX_KEYS:
        raise KeyFileError(f"a secure vnet holds 1 or {MAX_KEYS} keys, not {len(paths)}")
    keys = [load_key(p) for p in paths]
    if len(keys) == 2 and keys[0].id == keys[1].id:
        raise KeyFileError(f"key files {keys[0].path} and {keys[1].path} both have key id {keys[0].id}; "
                           "the two keys of a vnet need different ids")
    return keys


def write_key(path: str | os.PathLike, key_id: int, force: bool = False) -> Key:
    """Write a new random key; the file is created 0600 and never exists with a wider mode.

    The key is written to a temporary file in the same directory, fsynced, and only then
    given its name (linked, so an existing file is refused, or renamed over it with
    `force`), and the directory is fsynced: a power loss leaves the old key file or the
    new one, never an empty or half-written one that a vnet's state names and that
    would keep the vnet from coming back."""
    if not 0 <= key_id <= 255:
        raise KeyFileError(f"key id {key_id} is out of range: use 0 to 255")
    name = os.fspath(path)
    secret = os.urandom(SECRET_LEN)
    parent = Path(name).parent
    try:
        make_dir(parent, 0o700)
        if not force and os.path.lexists(name):
            raise FileExistsError
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(name).name}.", suffix=".tmp", dir=parent)
    except FileExistsError:
        raise KeyFileError(f"key file {name} already exists; use --force to replace it") from None
    except OSError as e:
        raise KeyFileError(f"key file {name}: cannot create: {e.strerror}") from None
    try:
        try:
            os.fchmod(fd, 0o600)
            data = memoryview(f"(vnet-key (id {key_id}) (secret {secret.hex()}))\n".encode())
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.rename(tmp, name)
        else:
            os.link(tmp, name)  # fails if the name was taken meanwhile; rename would replace it
            os.unlink(tmp)
        fsync_dir(parent)
    except FileExistsError:
        raise KeyFileError(f"key file {name} already exists; use --force to replace it") from None
    except OSError as e:
        raise KeyFileError(f"key file {name}: cannot create: {e.strerror}") from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return Key(key_id, secret, name)


def for_vnet(vid: VnetId, security: str, key_files: Sequence[str]) -> list[Key]:
    """The keys a vnet is to hold, send key first (none for (security none)), as both
    datapaths load them: a problem is a DatapathError naming files, never contents."""
    if security == "none":
        return []
    if not key_files:
        raise DatapathError("EINVAL", f"vnet {vid}: (security {security}) needs a key: "
                            "give (key-file PATH)")
    try:
        return load_keys(key_files)
    except KeyFileError as e:
        raise DatapathError("EINVAL", f"vnet {vid}: {e}") from None
