"""vnet's `xm`: the three xm vnet commands over vn's control model, and nothing else."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES, needs_root

import sxp
from vnet.cli.xm import xm
from vnet.model.config import VnetConfig
from vnet.model.state import StateStore

ID97 = "0000:0000:0000:0000:0000:0000:0000:0097"
NOT_HERE = ("xm: 'create' is not provided here: this xm only has vnet-create, vnet-delete and "
            "vnet-list (vnet's xm-compatible commands)\n")


def run(*args: str):
    return CliRunner().invoke(xm, list(args), prog_name="xm")


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VNET_STATE_DIR", "VNET_SOCKET", "VNET_DATAPATH"):
        monkeypatch.delenv(name, raising=False)


def persist(state_dir: Path, *ids: str) -> None:
    """Vnets in the state file only: enough for vnet-list, which needs no datapath."""
    with StateStore(state_dir).transaction() as state:
        for i in ids:
            state.add_vnet(VnetConfig.from_cli(i))


# ---- without root: arguments, refusals, listing the state file --------------------------

@pytest.mark.parametrize("command", ["create", "list", "help", "vnet-show", "network-attach"])
def test_other_xm_commands_are_refused(command: str) -> None:
    r = run(command, "x")
    assert r.exit_code == 1
    assert r.stderr == NOT_HERE.replace("'create'", f"'{command}'")
    assert r.stdout == ""


@pytest.mark.parametrize("args, needle", [
    (["vnet-create"], "Missing argument 'FILE'."),
    (["vnet-create", "a.sxp", "b.sxp"], "Got unexpected extra argument (b.sxp)"),
    (["vnet-delete"], "Missing argument 'ID'."),
    (["vnet-list", "--bogus"], "--bogus"),
    (["--datapath", "kernel", "vnet-list"], "'kernel' is not one of 'auto', 'kmod', 'vnetd'"),
])
def test_usage_errors(no_env, args: list[str], needle: str) -> None:
    r = run(*args)
    assert r.exit_code == 2, r.output
    usage, message = r.stderr.splitlines()
    assert usage.startswith("Usage: xm"), r.stderr
    assert message.startswith("xm: ") and needle in message, r.stderr


def test_no_command_prints_the_help() -> None:
    r = run()
    assert r.exit_code == 0
    assert r.stdout.startswith("Usage: xm [OPTIONS] COMMAND [ARGS]...")
    for command in ("vnet-create", "vnet-delete", "vnet-list"):
        assert f"  {command}  " in r.stdout


def test_vnet_create_reports_bad_files_before_any_datapath(no_env, tmp_path: Path) -> None:
    r = run("--state-dir", str(tmp_path), "vnet-create", str(tmp_path / "missing.sxp"))
    assert (r.exit_code, r.stderr) == (1, f"xm: {tmp_path}/missing.sxp: no such config file\n")
    bad = tmp_path / "vnif.sxp"
    bad.write_text("(vnet (id 97) (vnif vnif97))\n")
    r = run("--state-dir", str(tmp_path), "vnet-create", str(bad))
    assert r.exit_code == 1
    assert r.stderr == f"xm: {bad}: unknown field 'vnif' in (vnet ...); did you mean 'vnetif'?\n"
    assert StateStore(tmp_path).load().vnets == {}


def test_vnet_list_reads_the_state_file(no_env, tmp_path: Path, monkeypatch) -> None:
    persist(tmp_path, "99", "97")
    r = run("--state-dir", str(tmp_path), "vnet-list")
    assert (r.exit_code, r.stdout) == (0, f"{ID97}\n{ID97[:-2]}99\n")
    monkeypatch.setenv("VNET_STATE_DIR", str(tmp_path))  # as vn: the environment selects the host
    long = run("vnet-list", "-l")
    # xend's PrettyPrint.prettyprint: each record, no blank line between them (vn adds one).
    expected = "".join(sxp.pretty(VnetConfig.from_cli(i).to_sxp()) for i in ("97", "99"))
    assert (long.exit_code, long.stdout) == (0, expected)
    assert long.stdout.startswith(f"(vnet\n    (id {ID97})\n    (bridge vnet97)\n")
    by_name = run("vnet-list", "vnif99")
    assert by_name.stdout == sxp.pretty(VnetConfig.from_cli("99").to_sxp())


def test_vnet_list_reports_each_missing_id_and_lists_the_rest(no_env, tmp_path: Path) -> None:
    persist(tmp_path, "97")
    r = run("--state-dir", str(tmp_path), "vnet-list", "55", "97", "66")
    assert r.exit_code == 1
    assert r.stdout == sxp.pretty(VnetConfig.from_cli("97").to_sxp())
    assert r.stderr == "xm: vnet not found: 55\nxm: vnet not found: 66\n"


# ---- on a lab host with a datapath: the round trip -------------------------------------

@needs_root
@pytest.mark.root
def test_create_list_delete_round_trip(make_hosts) -> None:
    (h,) = make_hosts(1)
    r = h.xm("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    assert (r.stdout, r.stderr) == ("", "")
    assert h.xm("vnet-list").stdout == f"{ID97}\n"
    config = sxp.pretty(VnetConfig.from_file(EXAMPLES / "vnet97.sxp").to_sxp())
    assert h.xm("vnet-list", "-l").stdout == config
    assert h.xm("vnet-list", "97").stdout == config
    assert [v["id"] for v in h.vn_json("vnets")] == [ID97]
    assert {"bridge": "vnet97", "interfaces": ["vnif97"]} in h.vn_json("bridges")

    r = h.xm("vnet-create", str(EXAMPLES / "vnet97.sxp"), check=False)
    assert (r.returncode, r.stderr) == (1, f"xm: vnet {ID97} already exists\n")

    assert h.xm("vnet-delete", "97").stdout == ""  # xend's vnet-delete left the vnet running
    assert h.vn_json("vnets") == []
    assert StateStore(h.state_dir).load().vnets == {}
    assert h.xm("vnet-list").stdout == ""
    r = h.xm("vnet-list", "97", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "xm: vnet not found: 97\n")
    r = h.xm("vnet-delete", "97", check=False)
    assert (r.returncode, r.stderr) == (1, "xm: vnet not found: 97\n")
    # The bridge stays, as with `vn vnet-delete`; -b deletes it too.
    assert {"bridge": "vnet97", "interfaces": []} in h.vn_json("bridges")
    h.xm("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    h.xm("vnet-delete", "-b", "vnet97")
    assert [b for b in h.vn_json("bridges") if b["bridge"] == "vnet97"] == []
    assert h.vn_json("vnets") == []
