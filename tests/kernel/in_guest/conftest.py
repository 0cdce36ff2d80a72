"""Inside the test guest: the vnet module is loaded for the whole session, and the
shared scenario fixtures (tests/conftest.py) build module-backed hosts."""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import loader

os.environ["VNET_TEST_DATAPATH"] = "kmod"
VNET_KO = Path(os.environ.get("VNET_KO") or loader.default_module_path())
#: asm-generic/socket.h (x86-64); Python's socket module does not name it.
SO_TIMESTAMP = 29


def _shard() -> tuple[int, int] | None:
    shard = os.environ.get("VNET_GUEST_SHARD")
    if not shard:
        return None
    index, count = (int(x) for x in shard.split("/"))
    return index, count


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``$VNET_GUEST_SHARD`` = "i/n": n guests booted at once share the tests
    (tests/kernel/conftest.py).  With a shared queue (``$VNET_GUEST_SHARED``) each
    guest walks every test, starting at the i-th n-th of the test files, and runs
    those it claims first (`pytest_runtestloop`): the guests finish together, and
    mostly work in different files, so a file's module fixtures are rarely built
    twice.  Without one, guest i takes every n-th test from the i-th."""
    shard = _shard()
    if shard is None:
        return
    index, count = shard
    if not os.environ.get("VNET_GUEST_SHARED"):
        items[:] = items[index::count]
        return
    files = list(dict.fromkeys(item.path for item in items))
    start = files[len(files) * index // count] if files else None
    first = next((i for i, item in enumerate(items) if item.path == start), 0)
    items[:] = items[first:] + items[:first]


def _claim(queue: str, item: pytest.Item) -> bool:
    """Whether this guest takes `item`: the first guest to create its file in the
    queue does (O_EXCL on the uncached share is decided by the host, once)."""
    name = hashlib.sha256(item.nodeid.encode()).hexdigest()
    try:
        os.close(os.open(os.path.join(queue, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """pytest's own loop, over the tests this guest claims.  The next test is claimed
    before the current one runs, because its teardown must know what comes next
    (a module's fixtures stay up only for a test of the same module)."""
    queue = os.environ.get("VNET_GUEST_SHARED")
    if (not queue or _shard() is None or session.config.option.collectonly
            or (session.testsfailed and not session.config.option.continue_on_collection_errors)):
        return None  # pytest's own loop reports these cases
    pending = iter(session.items)

    def next_claimed() -> pytest.Item | None:
        return next((item for item in pending if _claim(queue, item)), None)

    item = next_claimed()
    while item is not None:
        nextitem = next_claimed()
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        item = nextitem
    return True


@pytest.fixture(scope="session", autouse=True)
def module_loaded():
    if not kmod.module_loaded():
        loader.insmod(VNET_KO)
    yield


@pytest.fixture(scope="session", autouse=True)
def timestamps_on():
    """Receive timestamps switched on for the whole session, before any traffic.

    Why: the first socket asking for them (every `ping` does) flips the kernel's
    netstamp static key, which rewrites the code of netif_receive_skb_list_internal()
    with text_poke's int3 dance while packets may be passing through it.  Once, in a
    fast-path run, both CPUs of the guest stayed in soft lockup for good at
    netif_receive_skb_list_internal+0x59 after asm_exc_int3, although memory held the
    patched jmp there again: QEMU 7.2's TCG looks to have kept running its stale
    translation of the int3, and the kprobe handler, finding no int3 in memory, backs
    the CPU up onto it each time.  One socket holding the key on from the start means
    the code is patched once, before any packet flows, and not again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
    yield
    sock.close()
