"""Fuzz target: the state loader (vnet/model/state.py), a state file's bytes -> State.

Any state file either loads or raises a VnetError (StateError, naming the file and
the problem, the file untouched); a state that loads is written back as vn writes it
and must load again to the same state.
"""
from __future__ import annotations


from tests.fuzz.harness import instrumented, run, scratch_dir

with instrumented():
    import sxp
    from vnet.errors import VnetError
    from vnet.model.state import State, StateStore

STORE = StateStore(scratch_dir())


def one_input(data: bytes) -> None:
    with open(STORE.path, "wb") as f:
        f.write(data)
    try:
        state = STORE.load()
    except VnetError:
        return
    stored = state.to_sxp()
    again = State.from_sxp(sxp.parse_one(sxp.pretty(stored)))
    assert again.to_sxp() == stored, f"written as {stored!r}, reads back otherwise"


if __name__ == "__main__":
    run(one_input)
