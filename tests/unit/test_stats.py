"""One set of counter and drop-reason names for both datapaths.

`vn stats` must say the same thing whichever datapath serves a host.  Both sets of
names are generated from kmod/vnet.yaml (tests/unit/test_genl.py keeps the generated
files current); here the module's enums and name tables, as the C compiler sees them
(kmod/netlink_gen.h and .c), are compared with the registry vnetd counts with
(vnet/wire/stats.py), entry by entry and in order."""
from __future__ import annotations

import re

from conftest import ROOT
from vnet.datapath.vnetd import daemon
from vnet.wire import stats

KMOD = ROOT / "kmod"


def c_enum(name: str) -> list[str]:
    """The entries of `enum NAME` in the module's generated header, up to its count."""
    body = re.search(r"enum %s \{(.*?)\};" % name, (KMOD / "netlink_gen.h").read_text(), re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    entries = re.findall(r"^\s*(VNET_[A-Z_]+)", body, re.M)
    return entries[:entries.index(next(e for e in entries if e.endswith("_COUNT")))]


def c_names(table: str) -> dict[str, str]:
    body = re.search(r"%s\[[A-Z_]+\] = \{(.*?)\};" % table, (KMOD / "netlink_gen.c").read_text(), re.S).group(1)
    return dict(re.findall(r"\[(VNET_[A-Z_]+)\]\s*=\s*\"([a-z-]+)\"", body))


def test_module_drop_reasons_are_the_registry() -> None:
    names, entries = c_names("vnet_drop_names"), c_enum("vnet_drop")
    assert [names[e] for e in entries] == list(stats.DROPS)
    # The module's VNET_D_X and vnetd's D_X count the same event.
    assert [getattr(stats, e.removeprefix("VNET_")) for e in entries] == list(range(len(stats.DROPS)))


def test_module_counters_are_the_registry() -> None:
    names, entries = c_names("vnet_counter_names"), c_enum("vnet_counter")
    assert [names[e] for e in entries] == list(stats.COUNTERS)
    assert [getattr(stats, e.removeprefix("VNET_")) for e in entries] == list(range(len(stats.COUNTERS)))


def test_constants_index_their_names() -> None:
    for prefix, names in (("D_", stats.DROPS), ("C_", stats.COUNTERS)):
        for i, name in enumerate(names):
            assert getattr(stats, prefix + name.upper().replace("-", "_")) == i


def test_named_lists_the_counts_that_are_not_zero() -> None:
    assert stats.named(("a", "b", "c"), [0, 2, 5]) == {"b": 2, "c": 5}


def test_vnetd_counts_only_registered_reasons() -> None:
    source = (ROOT / "vnet" / "datapath" / "vnetd").glob("*.py")
    used = {m for p in source for m in re.findall(r"\b([CD]_[A-Z_]+)\b", p.read_text())}
    assert used and all(hasattr(stats, u) for u in used), sorted(u for u in used if not hasattr(stats, u))
    assert daemon.stats is stats
