"""Build the module against kernels the test guest does not boot: Debian's other ones.

The guest boots Debian 12's 6.1, the only kernel the module is loaded and tested on.
The module must also build for the kernels Debian users get next (doc/kmod.md):
6.12 from bookworm-backports and the newest kernel of unstable.  This fetches those
kernels' headers and builds ``kmod/`` against them, so an interface change in a new
kernel shows up as a failing test rather than as a DKMS failure on a user's upgrade.

How, and why so:

* The suites' package lists live in a private apt directory in the cache (``-o
  Dir::Etc::SourceList=...``, ``-o Dir::State::Lists=...``): the host's apt
  configuration is not changed.  ``apt-get update`` refreshes them on every run
  (cheap once they are cached); offline, the last resolved kernel is used.
* ``linux-headers-<abi>-amd64``, ``linux-headers-<abi>-common`` and
  ``linux-kbuild-<version>`` are downloaded and unpacked (``dpkg-deb -x``), never
  installed.  Debian's headers name the compiler they were built with (``CC`` in
  ``.kernelvariables``): a kernel's own compiler is the only one its configuration
  (``CONFIG_CC_HAS_*``) is true for, and kbuild warns about any other.
* Where the host has that compiler and can run the suite's kbuild programs
  (bookworm-backports: gcc-12, glibc 2.36, as the host), the module is built on the
  host.  Otherwise (unstable: gcc-16 and kbuild programs that need a newer glibc than
  the host's) a minimal root of the suite is unpacked once, from the compiler's and
  linux-kbuild's dependency closure and a few essential packages, and the module is
  built there with ``chroot`` (in a private mount namespace with its own /proc, which
  objtool reads).
* Everything is cached under the guest cache (``$VNET_GUEST_CACHE``, default
  /var/cache/vnet-guest), in ``kbuild/``: after the first run a build needs no
  download unless the suite moved to a new kernel.  The first run downloads about
  30 MB for bookworm-backports and 110 MB for unstable.

Public API: :data:`TARGETS`, :func:`prepare`, :func:`build`.  Used by
tests/kernel/test_kbuild.py.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from lab import guest

__all__ = ["TARGETS", "BuildResult", "Kernel", "Target", "build", "prepare"]


@dataclasses.dataclass(frozen=True)
class Target:
    """A Debian suite whose default kernel (``linux-headers-amd64``) the module must
    build for."""

    name: str  # the test id
    suite: str


#: The kernels, besides the guest's 6.1, that the module builds for.  DKMS's
#: BUILD_EXCLUSIVE_KERNEL (kmod/dkms.conf) admits these series and no others.
TARGETS: tuple[Target, ...] = (
    Target("6.12-bookworm-backports", "bookworm-backports"),
    Target("6.12-trixie", "trixie"),
    Target("unstable", "sid"),
)

MIRROR = os.environ.get("VNET_KBUILD_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
#: What a build in a minimal root needs besides the compiler and linux-kbuild (whose
#: dependencies bring libelf, libssl and pahole): the shell and the tools kbuild's
#: makefiles and scripts call.
ROOT_PACKAGES = ("base-files", "bash", "dash", "coreutils", "diffutils", "findutils", "grep",
                 "mawk", "sed", "make", "libc6-dev")
#: Bounds on the network: the lists of one suite, the packages of one kernel or root.
UPDATE_TIMEOUT = 300
DOWNLOAD_TIMEOUT = 900


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One suite's kernel headers, unpacked, and where to build against them."""

    target: Target
    abi: str  # e.g. 7.2.13+deb14-amd64
    root: Path  # the unpacked packages: usr/src/linux-headers-<abi>/ and the rest
    chroot: bool  # build inside `root` (a minimal system of the suite) with chroot

    @property
    def kdir(self) -> str:
        """The headers' directory, as the build sees it."""
        path = f"/usr/src/linux-headers-{self.abi}"
        return path if self.chroot else str(self.root) + path


@dataclasses.dataclass
class BuildResult:
    returncode: int
    output: str
    ko: bool  # vnet.ko was made

    def warnings(self) -> list[str]:
        """Lines of the build that warn (the compiler's, modpost's, kbuild's)."""
        return [line for line in self.output.splitlines() if re.search(r"warning", line, re.IGNORECASE)]


def _run(argv: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False, **kw)


class _Apt:
    """apt-get and apt-cache on one suite, with lists and archives in the cache."""

    def __init__(self, base: Path, suite: str) -> None:
        self.dir = base / "apt" / suite
        self.sources = self.dir / "sources.list"
        (self.dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.dir / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        self.sources.write_text(f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n")
        self.options = [
            "-o", f"Dir::Etc::SourceList={self.sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={self.dir / 'lists'}", "-o", "Dir::State::status=/dev/null",
            "-o", f"Dir::Cache={self.dir}", "-o", f"Dir::Cache::archives={self.dir / 'archives'}",
            "-o", "APT::Install-Recommends=false", "-o", "Debug::NoLocking=1",
        ]

    def update(self) -> subprocess.CompletedProcess:
        return _run(["apt-get", *self.options, "-q", "update"], UPDATE_TIMEOUT)

    def has_lists(self) -> bool:
        return any((self.dir / "lists").glob("*_Packages*"))

    def show(self, package: str) -> str:
        cp = _run(["apt-cache", *self.options, "show", package], 60)
        if cp.returncode != 0:
            raise guest.GuestError(f"apt-cache show {package} ({self.sources.read_text().strip()}):\n{cp.stdout}")
        return cp.stdout

    def download(self, packages: list[str], dest: Path) -> list[Path]:
        """The packages themselves, no dependencies."""
        os.chmod(dest, 0o777)  # apt's _apt user writes here
        cp = _run(["apt-get", *self.options, "-q", "download", *packages], DOWNLOAD_TIMEOUT, cwd=dest)
        if cp.returncode != 0:
            raise guest.GuestError(f"apt-get download {' '.join(packages)} failed:\n{cp.stdout}")
        return sorted(dest.glob("*.deb"))

    def closure(self, packages: list[str]) -> list[Path]:
        """The packages and everything they depend on, downloaded into the archives."""
        archives = self.dir / "archives"
        for old in archives.glob("*.deb"):
            old.unlink()
        cp = _run(["apt-get", *self.options, "-q", "-y", "--download-only", "install", *packages],
                  DOWNLOAD_TIMEOUT)
        if cp.returncode != 0:
            raise guest.GuestError(f"apt-get --download-only install {' '.join(packages)} failed:\n{cp.stdout}")
        return sorted(archives.glob("*.deb"))


def _unpack(debs: list[Path], root: Path) -> None:
    for deb in debs:
        cp = _run(["dpkg-deb", "-x", str(deb), str(root)], 300)
        if cp.returncode != 0:
            raise guest.GuestError(f"dpkg-deb -x {deb.name} failed:\n{cp.stdout}")


def _field(text: str, name: str) -> str:
    m = re.search(rf"^{name}: (.*)$", text, re.MULTILINE)
    if not m:
        raise guest.GuestError(f"no {name} field in:\n{text}")
    return m[1]


def _resolve(apt: _Apt, marker: Path) -> str:
    """The ABI of the suite's default kernel, from fresh lists if the network allows,
    else the one resolved last time."""
    cp = apt.update()
    if cp.returncode != 0 or not apt.has_lists():
        if marker.exists():
            return marker.read_text().strip()
        raise guest.GuestError(f"apt-get update for {apt.sources.read_text().strip()} failed:\n{cp.stdout}")
    depends = _field(apt.show("linux-headers-amd64").split("\n\n")[0], "Depends")
    m = re.search(r"linux-headers-(\S+-amd64)\b", depends)
    if not m:
        raise guest.GuestError(f"linux-headers-amd64 depends on no linux-headers-<abi>-amd64: {depends}")
    marker.write_text(m[1] + "\n")
    return m[1]


def _compiler(root: Path, abi: str) -> str:
    """The compiler the kernel was built with, as its headers name it."""
    text = (root / f"usr/src/linux-headers-{abi}/.kernelvariables").read_text()
    cc = re.search(r"^CC = .*\$\(CROSS_COMPILE\)(\S+)\s*$", text, re.MULTILINE)
    cross = re.search(r"^override CROSS_COMPILE = (\S+)\s*$", text, re.MULTILINE)
    if not cc or not cross:
        raise guest.GuestError(f"no CC or CROSS_COMPILE in the .kernelvariables of {abi}:\n{text}")
    return cross[1] + cc[1]


def _host_can_build(root: Path, abi: str, cc: str) -> bool:
    """The host has the kernel's compiler and runs its kbuild programs (their glibc)."""
    if shutil.which(cc) is None:
        return False
    fixdep = root / f"usr/src/linux-headers-{abi}/scripts/basic/fixdep"
    cp = _run([str(fixdep)], 30)
    return "GLIBC" not in cp.stdout and "not found" not in cp.stdout


def prepare(target: Target) -> Kernel:
    """The unpacked headers of ``target``'s kernel, and for a kernel the host cannot
    build for, a minimal root of its suite; downloaded on first use."""
    base = guest.cache_root() / "kbuild"
    base.mkdir(parents=True, exist_ok=True)
    with guest._locked(base / "lock"):
        apt = _Apt(base, target.suite)
        abi = _resolve(apt, base / f"{target.suite}.abi")
        kdir = base / f"{target.suite}-{abi}"
        done = kdir / "complete"
        if done.exists():
            chroot = done.read_text().strip() == "chroot"
            return Kernel(target, abi, kdir / "root", chroot)
        for stale in base.glob(f"{target.suite}-*"):  # an older kernel of the suite
            if stale.is_dir():
                shutil.rmtree(stale)
        kdir.mkdir()
        root = kdir / "root"
        with tempfile.TemporaryDirectory(dir=kdir, prefix="fetch-") as tmp:
            version = abi.removesuffix("-amd64")
            headers = apt.download([f"linux-headers-{abi}", f"linux-headers-{version}-common",
                                    f"linux-kbuild-{version}"], Path(tmp))
            root.mkdir()
            _unpack(headers, root)
        cc = _compiler(root, abi)
        makefile = root / f"usr/src/linux-headers-{abi}/Makefile"
        chroot = not _host_can_build(root, abi, cc)
        if chroot:
            gcc = re.sub(r"^x86_64-linux-gnu-", "", cc)
            debs = apt.closure([gcc, f"linux-kbuild-{version}", *ROOT_PACKAGES])
            _unpack(debs, root)
            for deb in debs:  # unpacked: the root is what is kept
                deb.unlink()
            awk = root / "usr/bin/awk"  # an alternatives link, which no package ships
            if not awk.exists():
                awk.symlink_to("mawk")
        else:  # it includes the common headers by their installed path
            makefile.write_text(makefile.read_text().replace("include /usr/src/", f"include {root}/usr/src/"))
        done.write_text("chroot\n" if chroot else "host\n")
        return Kernel(target, abi, root, chroot)


def build(kernel: Kernel, kmod: Path, version: str) -> BuildResult:
    """``make -C kmod KDIR=...`` on a copy of ``kmod`` (the source tree is left alone)."""
    jobs = f"-j{os.cpu_count() or 1}"
    if not kernel.chroot:
        with tempfile.TemporaryDirectory(prefix="vnet-kbuild-") as tmp:
            src = Path(tmp) / "kmod"
            shutil.copytree(kmod, src, ignore=shutil.ignore_patterns("*.o", "*.ko", "*.mod*", ".*.cmd"))
            cp = _run(["make", jobs, "-C", str(src), f"KDIR={kernel.kdir}", f"VNET_VERSION={version}"], 900)
            return BuildResult(cp.returncode, cp.stdout, (src / "vnet.ko").exists())
    (kernel.root / "tmp").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=kernel.root / "tmp", prefix="vnet-kbuild-") as tmp:
        src = Path(tmp) / "kmod"
        shutil.copytree(kmod, src, ignore=shutil.ignore_patterns("*.o", "*.ko", "*.mod*", ".*.cmd"))
        inside = "/" + str(src.relative_to(kernel.root))
        make = shlex.join(["env", "-i", "PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8", "make", jobs,
                           "-C", inside, f"KDIR={kernel.kdir}", f"VNET_VERSION={version}"])
        script = (f"mount -t proc proc {shlex.quote(str(kernel.root / 'proc'))} && "
                  f"exec chroot {shlex.quote(str(kernel.root))} {make}")
        cp = _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], 900)
        return BuildResult(cp.returncode, cp.stdout, (src / "vnet.ko").exists())
