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


@pytest.fixture(scope="session", autouse=True)
def module_loaded():
    if not kmod.module_loaded():
        loader.insmod(VNET_KO)
    yield
