"""DKMS: `make -C kmod dkms-source` makes a tree that DKMS builds, with the project's
one version (/VERSION) as the package's and the module's, for the kernel the guest
tests boot; kernels outside BUILD_EXCLUSIVE_KERNEL are skipped, not built.

DKMS works on trees of its own under tmp_path (--sourcetree, --dkmstree,
--installtree, and its signing key there): the host's DKMS state, /usr/src and
/lib/modules are not touched.  Runs on the host, not in the guest.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import guest

ROOT = guest.REPO_ROOT
DKMS = shutil.which("dkms")
#: dkms's exit status for a kernel its BUILD_EXCLUSIVE_* settings rule out.
EXCLUDED = 77

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (dkms)"),
    pytest.mark.skipif(DKMS is None, reason="needs dkms (Debian package dkms, which setup.sh installs)"),
]


@pytest.fixture
def dkms(tmp_path: Path):
    """`dkms ACTION...` on a source tree made by `make -C kmod dkms-source` in
    tmp_path; returns (run, version)."""
    version = (ROOT / "VERSION").read_text().strip()
    src = tmp_path / "src"
    subprocess.run(["make", "-s", "-C", str(ROOT / "kmod"), "dkms-source", f"DKMS_SOURCE_TREE={src}"],
                   check=True, timeout=60)
    for d in ("tree", "install"):
        (tmp_path / d).mkdir()
    argv = [DKMS, "--sourcetree", str(src), "--dkmstree", str(tmp_path / "tree"),
            "--installtree", str(tmp_path / "install")]
    env = {**os.environ, "mok_signing_key": str(tmp_path / "mok.key"),
           "mok_certificate": str(tmp_path / "mok.pub")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=1200,
                              check=False)

    return run, version


def test_the_dkms_tree_names_the_project_version(tmp_path: Path, dkms) -> None:
    _, version = dkms
    conf = (tmp_path / "src" / f"vnet-{version}" / "dkms.conf").read_text()
    assert f'\nPACKAGE_VERSION="{version}"\n' in conf
    template = re.search(r'^PACKAGE_VERSION="(.*)"$', (ROOT / "kmod" / "dkms.conf").read_text(), re.MULTILINE)
    assert template and not re.search(r"\d", template[1]), "kmod/dkms.conf must not carry a version of its own"


def test_dkms_builds_the_module_with_the_project_version(tmp_path: Path, dkms) -> None:
    run, version = dkms
    try:
        abi = guest.kernel_abi()
    except guest.ToolsMissing as e:
        pytest.skip(str(e))
    r = run("build", f"vnet/{version}", "-k", abi)
    assert r.returncode == 0, r.stdout + r.stderr
    ko = tmp_path / "tree" / "vnet" / version / abi / platform.machine() / "module" / "vnet.ko"
    info = subprocess.run(["modinfo", "-F", "version", str(ko)], capture_output=True, text=True,
                          check=True, timeout=30)
    assert info.stdout.strip() == version
    assert f"vnet/{version}, {abi}, {platform.machine()}: built" in run("status").stdout


@pytest.mark.parametrize("release", ["5.10.0-28-amd64", "6.0.12", "6.10.0-1-amd64", "6.13.2-amd64",
                                     "7.1.5+deb14-amd64", "7.20.1-amd64"])
def test_dkms_skips_kernels_out_of_range(dkms, release: str) -> None:
    run, version = dkms
    r = run("build", f"vnet/{version}", "-k", release)
    assert r.returncode == EXCLUDED and "BUILD_EXCLUSIVE" in r.stderr, r.stdout + r.stderr


def test_dkms_admits_the_guest_kernel() -> None:
    """The one kernel the module is loaded and tested in; test_kbuild.py checks the
    kernels it is only built for."""
    try:
        abi = guest.kernel_abi()
    except guest.ToolsMissing as e:
        pytest.skip(str(e))
    regex = re.search(r'^BUILD_EXCLUSIVE_KERNEL="(.*)"$', (ROOT / "kmod" / "dkms.conf").read_text(), re.MULTILINE)
    assert regex and re.search(regex[1], abi), f"BUILD_EXCLUSIVE_KERNEL in kmod/dkms.conf does not admit {abi}"
