"""Fuzz target: the SXP parser (sxp/), from a file's bytes as config and state files are read.

Any bytes either parse or raise SxpError (which names the place); and what parses
prints back, by `show` and by `pretty`, to text that parses to the same values, since
vn writes its state with `pretty` and reads it back with the parser.
"""
from __future__ import annotations

import os

from tests.fuzz.harness import instrumented, run, scratch_dir

with instrumented():
    import sxp

PATH = os.path.join(scratch_dir(), "input.sxp")


def one_input(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        values = sxp.parse_file(PATH)
    except sxp.SxpError:
        return
    for v in values:
        assert sxp.parse_one(sxp.show(v)) == v, f"show() does not read back: {v!r}"
        assert sxp.parse(sxp.pretty(v)) == [v], f"pretty() does not read back: {v!r}"


if __name__ == "__main__":
    run(one_input)
