"""Making file-system changes survive a power loss, shared by the state and key files.

A rename or a new name is durable only once its directory is fsynced; without that, a
power loss after `vn` acknowledged a change can bring back the old file or no file.
"""
from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the names in directory `path` (a rename, a link, a new entry) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path, mode: int) -> None:
    """Create directory `path` with `mode` (directories missing above it as `mkdir -p`
    makes them), each one's name made durable in its parent.  An existing one is left
    as it is."""
    if path.is_dir():
        return
    make_dir(path.parent, 0o777)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        return
    fsync_dir(path.parent)
