"""Fuzz target: the key-file reader (vnet/model/keys.py), a key file's bytes -> Key.

Any file of mode 0600 either gives a key (an id 0-255 and a 32-byte secret) or
raises a VnetError (KeyFileError) that names the file and never quotes its contents.
"""
from __future__ import annotations

import os

from tests.fuzz.harness import instrumented, run, scratch_dir

with instrumented():
    from vnet.errors import VnetError
    from vnet.model import keys

PATH = os.path.join(scratch_dir(), "97.key")
NOT_A_KEY = f"key file {PATH}: not a key file; expected {keys._FORMAT}"


def one_input(data: bytes) -> None:
    fd = os.open(PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        key = keys.load_key(PATH)
    except VnetError as e:
        # The file is ours, regular and 0600: only its contents can be wrong, and the
        # message says so without quoting them.
        assert str(e) == NOT_A_KEY, f"unexpected error: {e}"
        return
    assert 0 <= key.id <= 255 and len(key.secret) == keys.SECRET_LEN, key


if __name__ == "__main__":
    run(one_input)
