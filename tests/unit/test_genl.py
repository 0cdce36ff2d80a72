"""The files generated from kmod/vnet.yaml (tools/genl.py) are current and not edited.

The spec is the one description of the module's netlink API and of the counter and
drop-reason names; the uAPI header, the module's policies and name tables, the
client's message class and vnetd's registry are rendered from it and committed.
These tests regenerate them and fail when someone edits a generated file, or the
spec without regenerating: run `python -m tools.genl`."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from tools import genl
from vnet.wire import stats

REGENERATE = "regenerate with: python -m tools.genl"
FILES = list(genl.render(genl.load()))


def copy_tree(files: list[str], to: Path) -> None:
    for rel in files:
        (to / rel).parent.mkdir(parents=True, exist_ok=True)
        (to / rel).write_bytes((ROOT / rel).read_bytes())


def spec_with(tmp_path: Path, change) -> Path:
    """A copy of the spec, changed by change(spec dict)."""
    spec = yaml.safe_load(genl.SPEC.read_text())
    change(spec)
    path = tmp_path / "vnet.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_generated_files_are_the_committed_ones(tmp_path: Path) -> None:
    assert genl.main(["--root", str(tmp_path)]) == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(FILES)
    for rel in FILES:
        assert (tmp_path / rel).read_bytes() == (ROOT / rel).read_bytes(), f"{rel} is out of date; {REGENERATE}"


def test_check_passes_on_the_tree(capsys) -> None:
    assert genl.main(["--check"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("rel", FILES)
def test_check_names_an_edited_file(rel: str, tmp_path: Path, capsys) -> None:
    copy_tree(FILES, tmp_path)
    edited = tmp_path / rel
    edited.write_text(edited.read_text().replace("VNET", "VNET_EDITED", 1))
    assert genl.main(["--check", "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"out of date {edited}"]
    assert genl.main(["--root", str(tmp_path)]) == 0  # regenerating repairs it
    assert edited.read_bytes() == (ROOT / rel).read_bytes()


def test_a_new_drop_reason_reaches_both_datapaths_only(tmp_path: Path, capsys) -> None:
    """A spec change that is not regenerated is caught, in the files it concerns."""
    def add_reason(spec: dict) -> None:
        drop = next(d for d in spec["definitions"] if d["name"] == "drop")
        drop["entries"].append({"name": "bad-hair-day", "doc": "a test reason"})
    spec = spec_with(tmp_path, add_reason)
    assert genl.main(["--check", "--spec", str(spec)]) == 1
    stale = [line.removeprefix("out of date ") for line in capsys.readouterr().out.splitlines()]
    assert sorted(stale) == sorted(str(ROOT / f) for f in (genl.GEN_H, genl.GEN_C, genl.STATS_PY))
    files = genl.render(genl.load(spec))
    assert '[VNET_D_BAD_HAIR_DAY]\t\t= "bad-hair-day",' in files[genl.GEN_C]
    assert '    "bad-hair-day",  # a test reason\n)' in files[genl.STATS_PY]
    assert f"D_BAD_HAIR_DAY = {len(stats.DROPS)}\n" in files[genl.STATS_PY]  # after the last one


def test_a_request_naming_an_unknown_attribute_is_refused(tmp_path: Path, capsys) -> None:
    def typo(spec: dict) -> None:
        op = next(o for o in spec["operations"]["list"] if o["name"] == "peer-add")
        op["do"]["request"]["attributes"].append("prot")
    assert genl.main(["--check", "--spec", str(spec_with(tmp_path, typo))]) == 2
    assert "operation peer-add: do request names unknown attributes ['prot']" in capsys.readouterr().err


def test_every_generated_file_says_so() -> None:
    for rel in FILES:
        head = (ROOT / rel).read_text().splitlines()[:2]
        assert any(genl.GENERATED in line for line in head), rel


def test_the_policy_admits_what_requests_carry() -> None:
    """The module's one policy: the attributes some request lists, nothing a reply only has."""
    spec = yaml.safe_load(genl.SPEC.read_text())
    requested = {a for op in spec["operations"]["list"] for kind in ("do", "dump")
                 for a in ((op.get(kind) or {}).get("request") or {}).get("attributes", [])}
    source = (ROOT / genl.GEN_C).read_text()
    policy = source[source.index("vnet_nl_policy[VNET_A_MAX + 1] = {"):]
    policy = policy[:policy.index("};")]
    assert {f"VNET_A_{a.upper().replace('-', '_')}" for a in requested} == \
        set(re.findall(r"\[(VNET_A_[A-Z_]+)\]", policy))
    assert "VNET_A_COUNTERS" not in policy and "VNET_A_RX_PACKETS" not in policy


def test_the_installed_package_needs_no_yaml() -> None:
    """vnet runs from the committed generated files, not from kmod/vnet.yaml: PyYAML
    is needed only by `vn topo` (which imports it when it reads a topology file)."""
    code = ("import sys; sys.modules['yaml'] = None\n"  # any import of yaml now fails
            "import vnet.cli.vn, vnet.datapath.kmod.client, vnet.wire.stats\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
