"""A clean install: the wheel built from this tree, in a fresh virtual environment.

Every other test imports vnet from the source tree, with whatever this machine has
installed, so a dependency that pyproject.toml does not declare, a lower bound that
is too low, or a module missing from the wheel goes unnoticed there.  Here the wheel
is installed into a new venv without system site packages (its dependencies come
from the package index, as for a user), and that venv's own `vn`, `vnetd`,
`network-vnet` and `xm` must work: their --help, an import of every installed
module, and two simulated hosts whose vnetd carry a secure (conf) vnet.

It runs twice: with the newest releases the bounds allow (what a fresh install
gets), and with every runtime dependency pinned to the lower bound pyproject.toml
declares, so the bounds are tested and not guessed.  Needs root and the package index.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, needs_root
from packaging.requirements import Requirement
from packaging.version import Version

from lab.lab import Host, Lab
from tools.manpage import PAGES
from vnet.control.controller import vnetd_answers

pytestmark = [needs_root, pytest.mark.root]

PACKAGES = ("vnet", "sxp")
COMMANDS = ("vn", "vnetd", "network-vnet", "xm")
PIP_TIMEOUT = 900  # a cold download cache on a slow link

#: Imports every module of the installed packages (walking them, not a list) but
#: `__main__`, and prints what it imported from where, what failed, and sys.path.
IMPORT_ALL = """
import importlib, json, pkgutil, sys, traceback
imported, failed = {}, {}
def walk(name):
    try:
        module = importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc()
        return
    imported[name] = module.__file__
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name != "__main__":
            walk(f"{name}.{info.name}")
for top in sys.argv[1:]:
    walk(top)
print(json.dumps({"imported": imported, "failed": failed, "path": sys.path}))
"""


def lower_bounds() -> list[str]:
    """`name==version` for each runtime dependency, at the lowest version it declares."""
    pins = []
    for text in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(text)
        lows = [s.version for s in req.specifier if s.operator == ">="]
        assert len(lows) == 1, f"pyproject.toml: dependency {text!r} declares no lower bound (>=)"
        pins.append(f"{req.name}=={lows[0]}")
    return pins


def source_files() -> set[str]:
    """The Python files of the installed packages in the source tree, as paths in a wheel."""
    return {path.relative_to(ROOT).as_posix() for top in PACKAGES for path in (ROOT / top).rglob("*.py")}


def module_names(files: set[str]) -> set[str]:
    """The modules that importing the packages' files gives (no `__main__`: importing
    one runs its program)."""
    return {f.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            for f in files if not f.endswith("/__main__.py")}


def clean_env(venv: Path | None = None) -> dict[str, str]:
    """This environment (pip's settings, proxies) less what would let the test run's
    interpreter, its tree or its vnet settings in; `venv`'s commands first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VNET_")) and k != "VIRTUAL_ENV"}
    env["PYTHONNOUSERSITE"] = "1"
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return env


def run(argv: list, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, argv))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of this tree: setuptools builds in the tree it is given and
    leaves build/ behind, whose stale files would go into the next wheel."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist", src], work, clean_env(),
        timeout=PIP_TIMEOUT)
    (built,) = (work / "dist").glob("vnet-*.whl")
    return built


def test_wheel_holds_the_packages_and_the_manual_pages_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    dist = "vnet-" + (ROOT / "VERSION").read_text().strip()
    assert {n.split("/")[0] for n in names} <= {*PACKAGES, f"{dist}.dist-info", f"{dist}.data"}, names
    assert {n for n in names if n.endswith(".py")} == source_files()
    pages = {n.rsplit("/", 1)[-1] for n in names if n.startswith(f"{dist}.data/data/share/man/")}
    assert pages == {p.filename for p in PAGES}


@pytest.fixture(scope="module", params=["newest", "lowest"])
def venv(request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed: with the newest dependencies, or with each
    pinned to its declared lower bound."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    venv = tmp_path / "venv"
    env = clean_env(venv)
    run([sys.executable, "-m", "venv", venv], tmp_path, env)
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg, cfg
    pins = lower_bounds() if request.param == "lowest" else []
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, *pins], tmp_path, env, timeout=PIP_TIMEOUT)
    listed = json.loads(run([venv / "bin" / "python", "-m", "pip", "list", "--format", "json"], tmp_path,
                            env).stdout)
    installed = {p["name"].lower(): p["version"] for p in listed}
    print(f"{request.param}: {installed}")
    for pin in pins:
        name, version = pin.split("==")
        assert Version(installed[name]) == Version(version), f"asked for {pin}, got {installed[name]}"
    return venv


def start_vnetd(lab: Lab, host: Host, venv: Path, state_dir: Path, env: dict[str, str],
                timeout: float = 60.0) -> Path:
    """The venv's vnetd on `host`, once its control socket answers; its log."""
    state_dir.mkdir()
    log = state_dir / "vnetd.log"
    with open(log, "w") as out:
        proc = lab.popen(host, [str(venv / "bin" / "vnetd"), "--state-dir", str(state_dir), "-a", host.ip, "-V"],
                         stdout=out, stderr=subprocess.STDOUT, env=env, cwd=state_dir)
    deadline = time.monotonic() + timeout
    while not vnetd_answers(state_dir / "vnetd.sock"):
        assert proc.poll() is None, f"vnetd on {host.name} exited ({proc.returncode}): {log.read_text()}"
        assert time.monotonic() < deadline, f"vnetd on {host.name} did not answer: {log.read_text()}"
        time.sleep(0.05)
    return log


def test_clean_install_runs(venv: Path, tmp_path: Path) -> None:
    env = clean_env(venv)
    outside = tmp_path / "cwd"  # not the source tree, whose packages would shadow the installed ones
    outside.mkdir()
    for command in COMMANDS:
        r = run([venv / "bin" / command, "--help"], outside, env)
        assert r.stdout.startswith(f"Usage: {command} "), r.stdout

    found = json.loads(run([venv / "bin" / "python", "-c", IMPORT_ALL, *PACKAGES], outside, env).stdout)
    assert found["failed"] == {}, "\n".join(found["failed"].values())
    assert set(found["imported"]) == module_names(source_files())
    site = str(venv / "lib")
    assert all(f.startswith(site) for f in found["imported"].values()), found["imported"]
    system = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} | {str(ROOT)}
    assert not system & set(found["path"]), found["path"]

    # The committed manual pages are current under this venv's click too (the
    # generator and the commands run from the tree; only the dependencies differ).
    run([venv / "bin" / "python", "-m", "tools.manpage", "--check"], ROOT, env)


def test_clean_install_carries_a_secure_vnet(venv: Path, tmp_path: Path) -> None:
    env = clean_env(venv)
    vn = str(venv / "bin" / "vn")
    key = tmp_path / "97.key"
    with Lab() as lab:
        sw = lab.switch("sw")
        hosts = [lab.host(f"h{i}", sw, f"10.0.0.{i}/24") for i in (1, 2)]
        logs = {h.name: start_vnetd(lab, h, venv, tmp_path / h.name, env) for h in hosts}

        def vn_on(h: Host, *args: str) -> str:
            r = lab.run(h, [vn, "--state-dir", str(tmp_path / h.name), *args], env=env, cwd=tmp_path, timeout=60)
            assert r.returncode == 0, \
                f"vn {' '.join(args)} on {h.name} failed: {r.stderr}\nits vnetd's log:\n{logs[h.name].read_text()}"
            return r.stdout

        vn_on(hosts[0], "key-gen", str(key))
        for h in hosts:
            vn_on(h, "vnet-create", "-s", "conf", "-k", str(key), "97")
            (listing,) = json.loads(vn_on(h, "vnets", "--json"))
            assert (listing["security"], listing["keys"]) == ("conf", [1]), listing
        # Frames sealed and opened by the installed cryptography, both ways.
        a = lab.vm("a", hosts[0], "vnet97", "10.97.0.1/24")
        b = lab.vm("b", hosts[1], "vnet97", "10.97.0.2/24")
        lab.wait_ping(a, b.ip, timeout=30)
        r = lab.ping(b, a.ip, count=3, interval=0.2)
        assert r.received == 3, r.output
