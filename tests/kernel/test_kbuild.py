"""The module builds, without a warning, for the kernels Debian users get after the
guest's 6.1: 6.12 (bookworm-backports) and the newest kernel of unstable.  Only built:
the guest boots 6.1, so nothing here loads or runs the module (doc/kmod.md).

lab/kbuild.py fetches each kernel's headers (and for unstable a minimal root with its
compiler) into the guest cache on first use; later runs only refresh the package lists.
Runs on the host, not in the guest, alongside the guest run.
"""
from __future__ import annotations

import os
import re
import shutil

import pytest

from lab import guest, kbuild

ROOT = guest.REPO_ROOT


def build_exclusive() -> re.Pattern:
    """DKMS's BUILD_EXCLUSIVE_KERNEL (kmod/dkms.conf): the kernels DKMS builds for."""
    m = re.search(r'^BUILD_EXCLUSIVE_KERNEL="(.*)"$', (ROOT / "kmod" / "dkms.conf").read_text(), re.MULTILINE)
    assert m, "kmod/dkms.conf has no BUILD_EXCLUSIVE_KERNEL"
    return re.compile(m[1])
TOOLS = ("apt-get", "apt-cache", "dpkg-deb", "make", "unshare", "chroot")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (apt's download directories, chroot)"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                       reason=f"needs {', '.join(TOOLS)} (Debian's apt, dpkg, make and util-linux)"),
]


@pytest.mark.parametrize("target", kbuild.TARGETS, ids=[t.name for t in kbuild.TARGETS])
def test_the_module_builds_without_warnings(target: kbuild.Target) -> None:
    kernel = kbuild.prepare(target)
    version = (ROOT / "VERSION").read_text().strip()
    result = kbuild.build(kernel, ROOT / "kmod", version)
    where = f"{kernel.abi} ({target.suite}{', in a root of the suite' if kernel.chroot else ''})"
    assert result.returncode == 0 and result.ko, f"the build for {where} failed:\n{result.output}"
    assert not result.warnings(), f"the build for {where} warns:\n" + "\n".join(result.warnings())
    # DKMS builds for what builds: a new series of unstable needs the regex widened.
    assert build_exclusive().search(kernel.abi), (
        f"{kernel.abi} builds, but BUILD_EXCLUSIVE_KERNEL in kmod/dkms.conf does not admit it")

