"""Fuzz target: the config loader (vnet/model/config.py), a config file's bytes -> VnetConfig.

Any file either loads or raises a VnetError (ConfigError, whose message says what is
wrong and where); a config that loads is stored in the state file by `to_sxp` and
must read back as the same config.
"""
from __future__ import annotations

import os

from tests.fuzz.harness import instrumented, run, scratch_dir

with instrumented():
    import sxp
    from vnet.errors import VnetError
    from vnet.model.config import VnetConfig

PATH = os.path.join(scratch_dir(), "vnet.sxp")


def one_input(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        cfg = VnetConfig.from_file(PATH)
    except VnetError:
        return
    stored = sxp.pretty(cfg.to_sxp())
    assert VnetConfig.from_sxp(sxp.parse_one(stored), "<stored>") == cfg, f"stored as {stored!r}, reads back otherwise"


if __name__ == "__main__":
    run(one_input)
