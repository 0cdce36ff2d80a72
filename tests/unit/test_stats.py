"""One set of counter and drop-reason names for both datapaths (vnet/wire/stats.py).

`vn stats` must say the same thing whichever datapath serves a host, so the module's
enums and name tables (kmod/vnet.h, kmod/netlink.c) are compared here with the
registry vnetd counts with, entry by entry and in order."""
from __future__ import annotations

import re

from conftest import ROOT
from vnet.datapath.vnetd import daemon
from vnet.wire import stats

KMOD = ROOT / "kmod"


def c_enum(name: str) -> list[str]:
    body = re.search(r"enum %s \{(.*?)\};" % name, (KMOD / "vnet.h").read_text(), re.S).group(1)
    return [e for e in re.findall(r"^\s*(VNET_[A-Z_]+)", body, re.M) if not e.endswith("_MAX")]


def c_names(table: str) -> dict[str, str]:
    body = re.search(r"%s\[[A-Z_]+\] = \{(.*?)\};" % table, (KMOD / "netlink.c").read_text(), re.S).group(1)
    return dict(re.findall(r"\[(VNET_[A-Z_]+)\]\s*=\s*\"([a-z-]+)\"", body))


def test_module_drop_reasons_are_the_registry() -> None:
    names = c_names("vnet_drop_names")
    assert [names[e] for e in c_enum("vnet_drop")] == list(stats.DROPS)


def test_module_counters_are_the_registry() -> None:
    names = c_names("vnet_counter_names")
    assert [names[e] for e in c_enum("vnet_counter")] == list(stats.COUNTERS)


def test_constants_index_their_names() -> None:
    for prefix, names in (("D_", stats.DROPS), ("C_", stats.COUNTERS)):
        for i, name in enumerate(names):
            assert getattr(stats, prefix + name.upper().replace("-", "_")) == i


def test_vnetd_counts_only_registered_reasons() -> None:
    source = (ROOT / "vnet" / "datapath" / "vnetd").glob("*.py")
    used = {m for p in source for m in re.findall(r"\b([CD]_[A-Z_]+)\b", p.read_text())}
    assert used and all(hasattr(stats, u) for u in used), sorted(u for u in used if not hasattr(stats, u))
    assert daemon.stats is stats
