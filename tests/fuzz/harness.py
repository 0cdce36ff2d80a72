"""What every fuzz target shares: how it starts libFuzzer under atheris.

A target module imports the code it drives inside `instrumented()`, so atheris
instruments vnet and sxp (and nothing else: instrumenting cryptography or the
standard library would only slow each input down), defines `one_input(data)`, and
ends with `run(one_input)`.  It is started as a subprocess by tests.fuzz.run, with
libFuzzer's own flags (-runs=, -timeout=, corpus directories) on its command line.
This module imports nothing of vnet itself: what it imported would escape
instrumentation.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

import atheris

#: The packages whose code the fuzzer measures coverage of and steers by.
PACKAGES = ["vnet", "sxp"]


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    with atheris.instrument_imports(include=PACKAGES):
        yield


def scratch_dir() -> str:
    """A directory for the file-reading targets: on tmpfs when there is one, since
    every input is written there once, and removed when the fuzzer exits."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = tempfile.mkdtemp(prefix="vnet-fuzz-", dir=base)
    import atexit
    import shutil
    atexit.register(shutil.rmtree, path, True)
    return path


def run(one_input: Callable[[bytes], None]) -> None:
    """Hand the command line to libFuzzer and fuzz until it stops.  An exception that
    escapes one_input is a crash: atheris prints it, writes the input to the
    artifact prefix and exits non-zero."""
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
