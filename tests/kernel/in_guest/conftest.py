"""Inside the test guest: the vnet module is loaded for the whole session, and the
shared scenario fixtures (tests/conftest.py) build module-backed hosts."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import loader

os.environ["VNET_TEST_DATAPATH"] = "kmod"
VNET_KO = Path(os.environ.get("VNET_KO") or loader.default_module_path())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``$VNET_GUEST_SHARD`` = "i/n": this guest runs every n-th test from the i-th, so
    that n guests booted at once share the tests (tests/kernel/conftest.py); taken in
    turn, the slow files' tests spread over all of them."""
    shard = os.environ.get("VNET_GUEST_SHARD")
    if not shard:
        return
    index, count = (int(x) for x in shard.split("/"))
    items[:] = items[index::count]


@pytest.fixture(scope="session", autouse=True)
def module_loaded():
    if not kmod.module_loaded():
        loader.insmod(VNET_KO)
    yield
