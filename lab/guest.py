"""Run project commands inside a QEMU guest booted with Debian's stock kernel.

Why this exists: the kernel of the machines vnet is developed and tested on is
built without module support, so ``insmod kmod/vnet.ko`` can never work there.
A guest running Debian's own kernel (the ABI that ``linux-headers-amd64``
targets, so a module built against the installed headers loads in it) is the
only place the module can be exercised.  To keep the guest cheap to build and
to keep tests written in ordinary Python, the guest does not get a disk image:

* the kernel image and its modules come from Debian's ``linux-image-<abi>``
  package, fetched with ``apt-get download`` and unpacked (never installed:
  installing would pull initramfs tools and touch /boot) into a cache dir;
* a tiny initramfs (static busybox, a generated ``/init`` and the stock
  modules needed to reach the host's files) mounts the host's ``/``
  read-only over virtio-9p, puts fresh proc/sys/dev/run mounts on top and
  chroots into it, so the host's own Python, pyroute2, ping, iproute2 and the
  repository checkout (at the same absolute path as on the host) are used
  unchanged;
* a second, writable 9p share of a host scratch dir carries the command to
  run in and the results (exit code, output, kernel log, junit files) out.

The host files must not change while a guest runs: the read-only share is
mounted with ``cache=loose`` (3-4x faster than no caching under emulation).

Environment knobs: ``VNET_GUEST_CACHE`` (cache dir, default
/var/cache/vnet-guest), ``VNET_GUEST_ABI`` (kernel ABI, default: what
linux-headers-amd64 depends on), ``VNET_GUEST_BUSYBOX`` (a static busybox),
``VNET_GUEST_VERBOSE=1`` (stream the guest's serial console to stderr),
``VNET_GUEST_KERNEL`` (boot a kernel built from source instead of the stock
one, and build the module against it: the directory ``python -m
lab.debug_kernel`` prints, see :func:`guest_kernel`).

When the booted kernel has kmemleak (the debug kernel does), the guest marks
everything allocated during boot as seen before the command runs and, after
unloading the module, scans twice and appends what kmemleak reports to the
kernel log, where :func:`kernel_problems` finds it.

Public API: :func:`run_in_guest`, :func:`kernel_problems`, :func:`build_module`,
:func:`kernel_abi`, :func:`fetch_kernel`, :func:`guest_kernel`, :func:`build_initramfs`,
:func:`check_tools`.  Used by the kernel tests (``tests/kernel/``) and by
``bench/bench_kmod.py``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "GUEST_RESULTS",
    "GUEST_SHARED",
    "INSTALL_HINT",
    "REPO_ROOT",
    "GuestError",
    "GuestResult",
    "KernelTree",
    "ModuleBuildError",
    "ToolsMissing",
    "build_initramfs",
    "build_module",
    "check_tools",
    "fetch_kernel",
    "guest_kernel",
    "kernel_abi",
    "kernel_problems",
    "run_in_guest",
]

#: The repository checkout this file belongs to.  Derived from ``__file__``
#: because CI clones the repo somewhere other than developers do; the guest sees
#: it at the same absolute path (the host's / is shared as the guest's root).
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Where the command running in the guest finds the writable results share
#: (also exported to it as ``$VNET_GUEST_RESULTS``).  Files written there appear
#: in ``results_dir`` on the host.
GUEST_RESULTS = "/run/vnet-results"
#: Where ``shared_dir`` appears in the guest: one host dir that several guests booted
#: at once all write, so they can share out work as they go (``$VNET_GUEST_SHARED``).
GUEST_SHARED = "/run/vnet-shared"

#: How a missing tool gets installed; quoted in every "missing" error.
INSTALL_HINT = (
    "install the guest test tools with `sudo ./setup.sh test` (or: apt-get install "
    "--no-install-recommends qemu-system-x86 linux-headers-amd64 busybox-static cpio "
    "kmod make)"
)

#: Cache of unpacked kernel packages and initramfs images, one subdir per ABI.
#: Overridable because a non-root developer cannot write /var/cache.
DEFAULT_CACHE = Path("/var/cache/vnet-guest")

#: Stock modules loaded by /init, in this order.  virtio_pci is a module in
#: Debian's kernel and must come first: without it no virtio device (and so no
#: 9p share) exists.  The network modules are what vnetd, the lab and the vnet
#: module build on; loading them up front means ``insmod vnet.ko`` finds the
#: symbols it needs even without modprobe.
BOOT_MODULES: tuple[str, ...] = (
    "virtio_pci", "9pnet_virtio", "9p",
    "bridge", "veth", "vxlan", "tun", "udp_tunnel", "ip6_udp_tunnel",
)
#: Loaded too when the kernel has them; their absence is not an error.
OPTIONAL_MODULES: tuple[str, ...] = ("sch_ingress", "cls_bpf", "sch_htb", "cls_u32")

#: Host environment variables handed to the guest command (plus every VNET_*).
PASSTHROUGH_ENV: tuple[str, ...] = (
    "CI", "LANG", "LC_ALL", "PYTHONPATH", "PYTHONHASHSEED", "PYTEST_ADDOPTS",
    "VIRTUAL_ENV", "TERM",
)

#: Time allowed for boot, module loading and shutdown on top of the command's
#: own timeout (under TCG the command starts about 3 s after QEMU does, and
#: powering off takes under a second).
BOOT_ALLOWANCE = 90.0

#: What a kernel built from source (the debug kernel) gets on top: see run_in_guest.
DEBUG_ALLOWANCE = 600.0
DEBUG_MEM_MB = 2048

_MIN_MEM_MB = 256


class GuestError(RuntimeError):
    """The guest could not be prepared or started."""


class ToolsMissing(GuestError):
    """A host tool or package the guest needs is not installed."""


class ModuleBuildError(GuestError):
    """``make`` failed for an out-of-tree module; the message holds its output."""


@dataclasses.dataclass
class GuestResult:
    """What a guest run produced.

    ``returncode`` is the command's exit status, 124 if it ran out of time inside
    the guest, or -1 if the guest never reported one (boot failure, kernel crash,
    QEMU killed by the host timeout): ``console`` then tells why.
    ``kernel_log`` is the guest's dmesg taken after the command, or the serial
    console when dmesg could not be saved.
    """

    returncode: int
    output: str
    kernel_log: str
    seconds: float
    console: str = ""
    timed_out: bool = False
    boot_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclasses.dataclass(frozen=True)
class KernelTree:
    """A kernel the guest boots: an unpacked ``linux-image-<abi>`` package in the
    cache, or (with ``build`` set) a kernel built from source, such as the debug
    kernel of lab/debug_kernel.py."""

    abi: str  # the kernel release (``uname -r`` in the guest)
    root: Path  # its file tree (boot/, lib/modules/<abi>/)
    build: Path | None = None  # kbuild's object tree of a kernel built from source

    @property
    def kdir(self) -> Path:
        """The tree out-of-tree modules build against (make's ``KDIR``)."""
        return self.build or Path("/lib/modules") / self.abi / "build"

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.abi}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.abi


# ---------------------------------------------------------------------------
# Host prerequisites


def _run(argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    """subprocess.run with text output captured; never raises on exit status."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    return subprocess.run(list(argv), check=False, **kw)


def _is_static_elf(path: Path) -> bool:
    """True if ``path`` is an ELF executable without a program interpreter.

    Debian's plain ``busybox`` package also installs /bin/busybox, dynamically
    linked; in the initramfs there is no libc, so only busybox-static will do.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
                return False
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def _busybox() -> Path | None:
    for cand in (os.environ.get("VNET_GUEST_BUSYBOX"), "/bin/busybox", "/usr/bin/busybox"):
        if cand and _is_static_elf(Path(cand)):
            return Path(cand)
    return None


def _qemu() -> str | None:
    return shutil.which("qemu-system-x86_64")


def kernel_abi() -> str:
    """The stock kernel ABI to boot and build against, e.g. ``6.1.0-56-amd64``.

    It is the one ``linux-headers-amd64`` depends on, so the module is built
    against exactly the headers of the kernel we boot (``$VNET_GUEST_ABI``
    overrides).  The headers must be installed: ``/lib/modules/<abi>/build``.
    """
    abi = os.environ.get("VNET_GUEST_ABI")
    if not abi:
        cp = _run(["dpkg-query", "-W", "-f=${Depends}", "linux-headers-amd64"],
                  stderr=subprocess.DEVNULL) if shutil.which("dpkg-query") else None
        m = re.search(r"linux-headers-(\d\S*?-amd64)\b", cp.stdout) if cp and cp.returncode == 0 else None
        if m:
            abi = m.group(1)
    if not abi:
        # Not Debian's meta package: settle for a single installed headers tree
        # that is not the running kernel's (which cannot load modules here).
        found = sorted(
            p.parent.name for p in Path("/lib/modules").glob("*/build")
            if p.exists() and p.parent.name != os.uname().release
        )
        if len(found) == 1:
            abi = found[0]
        elif found:
            raise ToolsMissing(
                f"several kernel headers trees {found}: set VNET_GUEST_ABI to one of them"
            )
    if not abi:
        raise ToolsMissing(f"linux-headers-amd64 is not installed: {INSTALL_HINT}")
    if not (Path("/lib/modules") / abi / "build").exists():
        raise ToolsMissing(
            f"kernel headers for {abi} missing (/lib/modules/{abi}/build): {INSTALL_HINT}"
        )
    return abi


def check_tools(build: bool = True) -> None:
    """Raise ToolsMissing naming every missing prerequisite, with the install hint.

    Checked up front, all at once, so a broken CI machine reports the whole
    list instead of failing one step later each time it is fixed.
    """
    missing: list[str] = []
    if _qemu() is None:
        missing.append("qemu-system-x86_64 (package qemu-system-x86)")
    if _busybox() is None:
        missing.append("a static /bin/busybox (package busybox-static)")
    for tool, pkg in (("cpio", "cpio"), ("modprobe", "kmod"), ("depmod", "kmod"),
                      ("timeout", "coreutils"), ("apt-get", "apt"), ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists() \
                and not Path("/sbin", tool).exists():
            missing.append(f"{tool} (package {pkg})")
    if build and shutil.which("make") is None:
        missing.append("make (package make)")
    if os.environ.get("VNET_GUEST_KERNEL"):
        own_kernel()  # raises GuestError saying what is wrong with the tree
    else:
        try:
            kernel_abi()
        except ToolsMissing:
            missing.append("kernel headers (package linux-headers-amd64)")
    if missing:
        raise ToolsMissing("missing for the kernel-module guest: " + ", ".join(missing)
                           + f"; {INSTALL_HINT}")


def _tool(name: str) -> str:
    """Full path of a tool that may live in sbin dirs not on a user's PATH."""
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin", name), Path("/sbin", name)) if p.exists()), None)
    if found is None:
        raise ToolsMissing(f"{name} not found: {INSTALL_HINT}")
    return found


# ---------------------------------------------------------------------------
# Cache


def cache_root() -> Path:
    """Where kernels and initramfs images are cached (``$VNET_GUEST_CACHE``)."""
    return Path(os.environ.get("VNET_GUEST_CACHE") or DEFAULT_CACHE)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path``: parallel test runs share the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _headers_version(abi: str) -> str | None:
    cp = _run(["dpkg-query", "-W", "-f=${Version}", f"linux-headers-{abi}"],
              stderr=subprocess.DEVNULL)
    if cp.returncode != 0:
        return None
    return cp.stdout.strip() or None


def _apt_download(pkg: str, version: str | None, dest: Path) -> Path:
    """``apt-get download`` one package into ``dest``; returns the .deb.

    Tries the exact version of the installed headers first (same build), then
    whatever the archive has for this ABI (a rebuild with the same ABI still
    loads modules built against these headers), refreshing the package lists
    once if apt does not know the package at all (a fresh CI machine).
    """
    attempts = [f"{pkg}={version}", pkg] if version else [pkg]
    log: list[str] = []
    for refreshed in (False, True):
        if refreshed:
            cp = _run(["apt-get", "update", "-qq"])
            log.append(f"$ apt-get update\n{cp.stdout}")
        for spec in attempts:
            cp = _run(["apt-get", "download", "-q", spec], cwd=dest)
            log.append(f"$ apt-get download {spec}\n{cp.stdout}")
            debs = sorted(dest.glob(f"{pkg}_*.deb"))
            if cp.returncode == 0 and debs:
                return debs[0]
    raise GuestError(f"could not download {pkg}:\n" + "\n".join(log))


def fetch_kernel(abi: str | None = None) -> KernelTree:
    """The unpacked stock kernel package for ``abi``, downloading it on first use.

    Unpacked with ``dpkg-deb -x`` rather than installed (installing would run
    initramfs-tools and touch the host's /boot).  ``depmod`` is run on the tree
    so modprobe (kmod's on the host and in the guest's chroot, busybox's for
    the kernel's own module autoloading) can resolve dependencies in it.
    """
    abi = abi or kernel_abi()
    base = cache_root() / abi
    tree = KernelTree(abi, base / "root")
    done = base / "complete"
    if done.exists() and tree.vmlinuz.exists():
        return tree
    for tool in ("apt-get", "dpkg-deb", "depmod"):
        _tool(tool)
    with _locked(base / "lock"):
        if done.exists() and tree.vmlinuz.exists():
            return tree
        with tempfile.TemporaryDirectory(dir=base, prefix="fetch-") as tmp:
            tmpdir = Path(tmp)
            os.chmod(tmpdir, 0o755)  # apt's _apt user must be able to write here
            deb = _apt_download(f"linux-image-{abi}", _headers_version(abi), tmpdir)
            staged = tmpdir / "root"
            cp = _run(["dpkg-deb", "-x", str(deb), str(staged)])
            if cp.returncode != 0:
                raise GuestError(f"dpkg-deb -x {deb.name} failed:\n{cp.stdout}")
            if not (staged / "boot" / f"vmlinuz-{abi}").exists():
                raise GuestError(f"{deb.name} has no boot/vmlinuz-{abi}")
            cp = _run([_tool("depmod"), "-b", str(staged), abi])
            if cp.returncode != 0:
                raise GuestError(f"depmod -b {staged} {abi} failed:\n{cp.stdout}")
            if tree.root.exists():
                shutil.rmtree(tree.root)
            staged.rename(tree.root)
        done.write_text(deb.name + "\n")
    return tree


def own_kernel() -> KernelTree | None:
    """The kernel tree ``$VNET_GUEST_KERNEL`` names, or None when it is not set.

    The directory holds ``root/`` (``boot/vmlinuz-<release>`` and
    ``lib/modules/<release>/``, as ``make modules_install INSTALL_MOD_PATH=root``
    leaves it) and ``build/`` (kbuild's object tree, with ``modules_prepare``
    done, so the module builds against it): what ``python -m lab.debug_kernel``
    makes and prints.
    """
    path = os.environ.get("VNET_GUEST_KERNEL")
    if not path:
        return None
    base = Path(path).resolve()
    releases = sorted(p.name for p in (base / "root" / "lib" / "modules").glob("*") if p.is_dir())
    if len(releases) != 1:
        raise GuestError(f"VNET_GUEST_KERNEL={path}: expected one kernel release in "
                         f"{base}/root/lib/modules, found {releases or 'none'} (build the tree "
                         "with `python -m lab.debug_kernel`)")
    tree = KernelTree(releases[0], base / "root", base / "build")
    for need in (tree.vmlinuz, tree.kdir / "Module.symvers"):
        if not need.exists():
            raise GuestError(f"VNET_GUEST_KERNEL={path}: {need} is missing (build the tree "
                             "with `python -m lab.debug_kernel`)")
    return tree


def guest_kernel() -> KernelTree:
    """The kernel the guest boots: ``$VNET_GUEST_KERNEL``'s if set, else Debian's stock one."""
    return own_kernel() or fetch_kernel()


# ---------------------------------------------------------------------------
# Out-of-tree module


def build_module(src_dir: str | os.PathLike[str], abi: str | None = None,
                 name: str = "vnet") -> Path:
    """Build the out-of-tree module in ``src_dir``; returns the path of ``<name>.ko``.

    Runs ``make -C <src_dir> KDIR=/lib/modules/<abi>/build`` (without ``abi``,
    against the kernel the guest boots, see :func:`guest_kernel`): the module's own
    Makefile decides how to call kbuild, we only say which kernel.  Any failure
    raises ModuleBuildError carrying make's output, since that output is the
    only useful thing to show when a test fails for it.
    """
    src = Path(src_dir).resolve()
    own = own_kernel() if abi is None else None
    kdir = own.kdir if own else Path("/lib/modules") / (abi or kernel_abi()) / "build"
    if not (src / "Makefile").exists():
        raise ModuleBuildError(f"no Makefile in {src}: nothing to build {name}.ko from")
    if shutil.which("make") is None:
        raise ToolsMissing(f"make is not installed: {INSTALL_HINT}")
    cmd = ["make", "-C", str(src), f"KDIR={kdir}"]
    cp = _run(cmd)
    ko = src / f"{name}.ko"
    if cp.returncode != 0:
        raise ModuleBuildError(
            f"`{shlex.join(cmd)}` failed with exit status {cp.returncode}:\n{cp.stdout}")
    if not ko.exists():
        others = sorted(p.name for p in src.glob("*.ko"))
        raise ModuleBuildError(
            f"`{shlex.join(cmd)}` succeeded but made no {ko} (found: {others or 'no .ko'}):\n"
            f"{cp.stdout}")
    return ko


# ---------------------------------------------------------------------------
# Initramfs


def write_cpio(stage: Path, image: Path) -> None:
    """Pack the tree `stage` into the initramfs `image` (newc, owned by root), through
    a temporary file, so a failed or interrupted run never leaves a half image."""
    files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
    tmp_image = image.with_suffix(".tmp")
    with open(tmp_image, "wb") as out:
        cp = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"],
                            input="\n".join(["."] + files).encode(), stdout=out,
                            stderr=subprocess.PIPE, cwd=stage, check=False)
    if cp.returncode != 0:
        tmp_image.unlink(missing_ok=True)
        raise GuestError(f"cpio failed: {cp.stderr.decode(errors='replace')}")
    tmp_image.rename(image)

# The guest's PID 1.  Kept free of run-specific values so the image can be
# cached; everything per-run comes from guest.conf on the results share.
# Runs under busybox sh, whose own applets (ip, tc, ...) shadow $PATH: it
# therefore does only mounting and bookkeeping, and the real work happens in
# the chroot with the host's binaries.
_INIT = r"""#!/bin/busybox sh
# vnet guest /init, generated by lab/guest.py
export PATH=/bin:/sbin
ABI=@ABI@
R=/host/run/vnet-results
say() { echo "vnet-guest: $*" > /dev/kmsg; }
die() { echo "vnet-guest: FATAL: $*" > /dev/console; poweroff -f; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r ko; do
    insmod "/lib/modules/$ABI/$ko" || say "insmod $ko failed"
done < /modules.load
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostfs /host \
    || die "cannot mount the host share"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /host/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm
mount -t tmpfs -o mode=755 tmpfs /host/run
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup 2>/dev/null
mount -t bpf bpf /host/sys/fs/bpf 2>/dev/null
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null
mkdir -p $R /host/run/tmp /host/run/netns
chmod 1777 /host/run/tmp
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none results $R \
    || die "cannot mount the results share"
[ -r $R/guest.conf ] || die "no guest.conf on the results share"
. $R/guest.conf
if [ -n "$SHARED" ]; then
    mkdir -p /host$SHARED
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none shared /host$SHARED \
        || die "cannot mount the shared share"
fi
# The whole stock module tree, for modprobe in the chroot (kmod) and for the
# kernel's own autoloading (which runs /sbin/modprobe, i.e. busybox, in this root).
if [ -n "$MODTREE" ] && [ -d "/host$MODTREE" ]; then
    mount --bind "/host$MODTREE" /lib/modules/$ABI
    [ -d /host/lib/modules/$ABI ] && mount --bind "/host$MODTREE" /host/lib/modules/$ABI
fi
ln -s /proc/self/fd /host/dev/fd
ln -s /proc/self/fd/0 /host/dev/stdin
ln -s /proc/self/fd/1 /host/dev/stdout
ln -s /proc/self/fd/2 /host/dev/stderr
# kmemleak (a debug kernel's): what boot allocated is not the command's to leak.
KMEMLEAK=/host/sys/kernel/debug/kmemleak
[ -w $KMEMLEAK ] && echo clear > $KMEMLEAK
say "running command"
echo "$(cut -d' ' -f1 /proc/uptime)" > $R/boot-seconds
setsid chroot /host /bin/sh $GUEST_RESULTS/run.sh < /dev/null > $R/output.log 2>&1 &
pid=$!
# On timeout, SIGINT first: pytest then stops as on Ctrl-C and still writes its
# summary and junit.xml (which tests ran, how long each took); SIGKILL 20 s later.
( sleep "$TIMEOUT"; echo timeout > $R/timed-out; echo w > /proc/sysrq-trigger;
  kill -INT -- -$pid; sleep 20; kill -KILL -- -$pid ) &
watchdog=$!
wait $pid
rc=$?
kill $watchdog 2>/dev/null
[ -e $R/timed-out ] && rc=124
echo $rc > $R/rc.tmp && mv $R/rc.tmp $R/rc
say "command exited with status $rc"
# A module still loaded never ran its exit path: unload it here so leaks and
# hangs on unload show up in the log checked below.  Bounded: a stuck rmmod
# must not cost the log.
for m in $UNLOAD; do
    [ -d /sys/module/$m ] || continue
    say "unloading $m"
    rm -f /tmp/rmmod.rc
    ( rmmod $m > /tmp/rmmod.out 2>&1; echo $? > /tmp/rmmod.rc ) &
    n=0
    while [ ! -e /tmp/rmmod.rc ] && [ $n -lt 150 ]; do sleep 0.2; n=$((n+1)); done
    if [ ! -e /tmp/rmmod.rc ]; then
        say "PROBLEM: rmmod $m still running after 30 s"
    elif [ "$(cat /tmp/rmmod.rc)" != 0 ]; then
        say "rmmod $m failed (left in use by the command?): $(cat /tmp/rmmod.out)"
    fi
done
# Leaks show once the module is gone; kmemleak wants two scans some seconds
# apart (an object just freed or in flight can look unreferenced to one scan).
if [ -w $KMEMLEAK ]; then
    say "kmemleak: scanning"
    echo scan > $KMEMLEAK; sleep 6; echo scan > $KMEMLEAK
    cat $KMEMLEAK > $R/kmemleak.log
    say "kmemleak: $(grep -c 'unreferenced object' $R/kmemleak.log) suspected leaks"
fi
say "kernel tainted=$(cat /proc/sys/kernel/tainted)"
dmesg > $R/dmesg.log
sync
umount $R
poweroff -f
"""


def _resolve_modules(tree: KernelTree, names: Sequence[str]) -> list[Path]:
    """Module files for ``names`` plus their dependencies, in load order.

    Uses the host's kmod with ``-d/-S`` against the unpacked tree rather than
    guessing dependencies: they change between kernel builds.
    """
    cp = _run([_tool("modprobe"), "-a", "-d", str(tree.root), "-S", tree.abi,
               "--show-depends", *names], stderr=subprocess.PIPE)
    if cp.returncode != 0:
        raise GuestError(f"modprobe --show-depends {' '.join(names)} failed: {cp.stderr}")
    out: list[Path] = []
    for line in cp.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "insmod":
            p = Path(parts[1])
            if p not in out:
                out.append(p)
    return out


def build_initramfs(tree: KernelTree) -> Path:
    """A cached initramfs image (newc cpio) for ``tree``: busybox, /init, modules.

    Left uncompressed: under TCG the kernel would spend longer inflating it than
    reading a few more MB. Cached under a hash of everything that goes into it.
    """
    busybox = _busybox()
    if busybox is None:
        raise ToolsMissing(f"static busybox not found: {INSTALL_HINT}")
    mods = _resolve_modules(tree, BOOT_MODULES)
    for name in OPTIONAL_MODULES:
        try:
            mods += [m for m in _resolve_modules(tree, [name]) if m not in mods]
        except GuestError:
            pass
    init = _INIT.replace("@ABI@", tree.abi)
    h = hashlib.sha256(init.encode())
    h.update(busybox.read_bytes())
    for m in mods:
        h.update(str(m).encode())
        h.update(str(m.stat().st_size).encode())
    image = cache_root() / tree.abi / f"initrd-{h.hexdigest()[:16]}.cpio"
    if image.exists():
        return image
    with _locked(cache_root() / tree.abi / "lock"):
        if image.exists():
            return image
        with tempfile.TemporaryDirectory(prefix="vnet-initramfs-") as tmp:
            stage = Path(tmp)
            for d in ("bin", "sbin", "dev", "proc", "sys", "host", "run", "tmp",
                      f"lib/modules/{tree.abi}"):
                (stage / d).mkdir(parents=True, exist_ok=True)
            shutil.copy2(busybox, stage / "bin" / "busybox")
            cp = _run([str(stage / "bin" / "busybox"), "--list"])
            for applet in cp.stdout.split():
                link = stage / ("sbin" if applet in ("modprobe", "insmod", "rmmod", "poweroff",
                                                     "depmod", "lsmod", "modinfo") else "bin") / applet
                if applet != "busybox" and not link.exists():
                    link.symlink_to("/bin/busybox")
            order = []
            for m in mods:
                rel = m.relative_to(tree.modules_dir)
                (stage / "lib/modules" / tree.abi / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(m, stage / "lib/modules" / tree.abi / rel)
                order.append(str(rel))
            for meta in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
                if (tree.modules_dir / meta).exists():
                    shutil.copy2(tree.modules_dir / meta, stage / "lib/modules" / tree.abi / meta)
            cp = _run([_tool("depmod"), "-b", str(stage), tree.abi])
            if cp.returncode != 0:
                raise GuestError(f"depmod for the initramfs failed:\n{cp.stdout}")
            (stage / "modules.load").write_text("".join(f"{o}\n" for o in order))
            (stage / "init").write_text(init)
            (stage / "init").chmod(0o755)
            write_cpio(stage, image)
            # Older images (another busybox, module set or /init) are dead weight.
            for old in image.parent.glob("initrd-*.cpio"):
                if old != image:
                    old.unlink(missing_ok=True)
    return image


# ---------------------------------------------------------------------------
# Running


def _accel() -> list[str]:
    """QEMU accelerator arguments: hardware KVM if usable, else TCG emulation.

    kvm_pvm (the software-nested KVM on the project's machines) cannot run a
    stock kernel: it aborts or hangs in the decompressor, so it counts as no KVM.
    """
    if (os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)
            and not os.path.exists("/sys/module/kvm_pvm")):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg", "-cpu", "max"]


def _guest_env(extra_env: Mapping[str, str] | None, abi: str) -> dict[str, str]:
    """The command's whole environment: built, not inherited, so it is reproducible."""
    pydir = os.path.dirname(sys.executable)
    path = [pydir] + [p for p in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                  "/usr/bin", "/sbin", "/bin") if p != pydir]
    env = {k: v for k, v in os.environ.items()
           if k in PASSTHROUGH_ENV or k.startswith("VNET_")}
    env.update({
        "PATH": ":".join(path),
        "HOME": os.environ.get("HOME", "/root"),  # read-only, but user site-packages live there
        "TMPDIR": "/run/tmp",
        "XDG_CACHE_HOME": "/run/tmp/.cache",
        "PYTHONDONTWRITEBYTECODE": "1",  # the share is read-only
        "PYTHONUNBUFFERED": "1",  # partial output survives a hang
        "VNET_IN_GUEST": "1",
        "VNET_GUEST_RESULTS": GUEST_RESULTS,
        "VNET_GUEST_ABI": abi,
    })
    env.update(extra_env or {})
    return env


def _qemu_escape(path: Path) -> str:
    """A path as a QEMU option value: commas are doubled."""
    return str(path).replace(",", ",,")


def _check_visible(path: Path, what: str) -> None:
    """The guest replaces these trees with fresh mounts: host files there are invisible."""
    for hidden in ("/run", "/proc", "/sys", "/dev"):
        if path == Path(hidden) or Path(hidden) in path.parents:
            raise GuestError(f"{what} {path} is under {hidden}, which the guest mounts over")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_in_guest(
    argv: Sequence[str],
    timeout: float = 600.0,
    extra_env: Mapping[str, str] | None = None,
    smp: int = 2,
    mem_mb: int = 1024,
    results_dir: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    verbose: bool | None = None,
    unload: Sequence[str] = ("vnet",),
    cancel: threading.Event | None = None,
    shared_dir: str | os.PathLike[str] | None = None,
) -> GuestResult:
    """Boot the stock kernel, run ``argv`` (chrooted into the host's /), power off.

    ``argv`` runs with cwd = the repository root (or ``cwd``), as root, with a
    fresh environment (see :func:`_guest_env`; ``extra_env`` adds to it).
    ``timeout`` bounds the command inside the guest; the guest then still saves
    its kernel log.  QEMU itself is killed ``BOOT_ALLOWANCE`` seconds later.

    Results: files the command writes to ``$VNET_GUEST_RESULTS`` (/run/vnet-results)
    land in ``results_dir``, which is left in place when given and is a
    temporary dir removed afterwards when not.  ``verbose`` (default:
    ``$VNET_GUEST_VERBOSE``) copies the serial console to stderr as it comes.
    Modules in ``unload`` still loaded after the command are removed before the
    kernel log is saved, so their exit path gets checked too.  Setting ``cancel``
    (from another thread) kills the guest at once, so a run in the background never
    outlives whoever started it.  ``shared_dir``, a host dir that guests booted at
    once may all be given, is writable in the guest at ``GUEST_SHARED`` (and named by
    ``$VNET_GUEST_SHARED``); it is uncached, so a file one guest creates with O_EXCL
    the others cannot create too.
    """
    check_tools(build=False)
    if verbose is None:
        verbose = bool(os.environ.get("VNET_GUEST_VERBOSE"))
    if os.geteuid() != 0:
        raise GuestError("the guest runs as root over a share of / and needs root on the host")
    workdir = Path(cwd).resolve() if cwd is not None else REPO_ROOT
    _check_visible(workdir, "working directory")
    _check_visible(Path(sys.executable), "python")
    tree = guest_kernel()
    _check_visible(tree.root, "kernel cache")
    initrd = build_initramfs(tree)
    allowance = BOOT_ALLOWANCE
    if tree.build is not None:
        # A kernel of our own is the debug kernel: its detectors slow boot and
        # shutdown several times over under emulation, KASAN takes an eighth of
        # the memory for its shadow, and kmemleak's scans read all of it.
        mem_mb = max(mem_mb, DEBUG_MEM_MB)
        allowance += DEBUG_ALLOWANCE

    with contextlib.ExitStack() as stack:
        if results_dir is None:
            rdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vnet-guest-")))
        else:
            rdir = Path(results_dir)
            rdir.mkdir(parents=True, exist_ok=True)
            for stale in ("rc", "output.log", "dmesg.log", "timed-out", "boot-seconds",
                          "console.log", "kmemleak.log"):
                (rdir / stale).unlink(missing_ok=True)
        env = _guest_env(extra_env, tree.abi)
        if shared_dir is not None:
            env["VNET_GUEST_SHARED"] = GUEST_SHARED
        script = "\n".join([
            "# generated by lab/guest.py: the command, run by the host's sh in the chroot",
            f"cd {shlex.quote(str(workdir))} || exit 125",
            "exec env -i " + " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
            + " " + shlex.join(argv),
            "",
        ])
        (rdir / "run.sh").write_text(script)
        (rdir / "guest.conf").write_text(
            f"TIMEOUT={int(max(1, timeout))}\n"
            f"GUEST_RESULTS={shlex.quote(GUEST_RESULTS)}\n"
            f"MODTREE={shlex.quote(str(tree.modules_dir))}\n"
            f"UNLOAD={shlex.quote(' '.join(unload))}\n"
            f"SHARED={GUEST_SHARED if shared_dir is not None else ''}\n"
        )
        qemu = _qemu()
        assert qemu is not None
        # hung_task_timeout_secs: report a stuck task while the run still goes on,
        # not after the default 120 s.  log_buf_len: keep a long run's whole log.
        append = ("console=ttyS0 panic=-1 log_buf_len=4M rdinit=/init"
                  " sysctl.kernel.hung_task_timeout_secs=30")
        host_timeout = timeout + allowance
        cmd = [
            "timeout", "-k", "10", str(int(host_timeout)),
            qemu, *_accel(),
            "-smp", str(smp), "-m", str(max(mem_mb, _MIN_MEM_MB)),
            "-nographic", "-no-reboot", "-nic", "none", "-monitor", "none", "-serial", "stdio",
            "-kernel", str(tree.vmlinuz), "-initrd", str(initrd), "-append", append,
            "-virtfs", "local,path=/,mount_tag=hostfs,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={_qemu_escape(rdir)},mount_tag=results,security_model=none,multidevs=remap",
        ]
        if shared_dir is not None:
            cmd += ["-virtfs", f"local,path={_qemu_escape(Path(shared_dir).resolve())},"
                    "mount_tag=shared,security_model=none,multidevs=remap"]
        console_path = rdir / "console.log"
        start = time.monotonic()
        with open(console_path, "wb") as console_file:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
            assert proc.stdout is not None

            def pump() -> None:
                for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
                    console_file.write(chunk)
                    console_file.flush()
                    if verbose:
                        sys.stderr.buffer.write(chunk)
                        sys.stderr.buffer.flush()

            reader = threading.Thread(target=pump, name="guest-console", daemon=True)
            reader.start()
            deadline = time.monotonic() + host_timeout + 20
            try:
                while proc.poll() is None:
                    if time.monotonic() > deadline or (cancel is not None and cancel.is_set()):
                        proc.kill()
                        break
                    try:
                        proc.wait(timeout=1.0)
                    except subprocess.TimeoutExpired:
                        pass
                proc.wait()
            finally:
                if proc.poll() is None:  # KeyboardInterrupt: don't leave QEMU behind
                    proc.kill()
                    proc.wait()
            reader.join(timeout=10)
        seconds = time.monotonic() - start

        console = _read(console_path)
        output = _read(rdir / "output.log")
        dmesg = _read(rdir / "dmesg.log")
        leaks = _read(rdir / "kmemleak.log")
        if dmesg and leaks.strip():
            dmesg += f"vnet-guest: kmemleak report after the run:\n{leaks}"
        rc_text = _read(rdir / "rc").strip()
        timed_out = (rdir / "timed-out").exists()
        try:
            boot = float(_read(rdir / "boot-seconds").strip())
        except ValueError:
            boot = None
        if rc_text.lstrip("-").isdigit():
            returncode = int(rc_text)
        else:
            returncode = -1
            timed_out = timed_out or proc.returncode in (124, 137, -9)
            output += (
                f"\n[vnet guest: no exit status came back (QEMU exit status {proc.returncode}"
                f" after {seconds:.0f} s); serial console tail:]\n{_tail(console)}\n"
            )
        if timed_out and returncode == 124:
            output += f"\n[vnet guest: command killed after its {timeout:g} s timeout]\n"
        return GuestResult(
            returncode=returncode,
            output=output,
            kernel_log=dmesg or console,
            seconds=seconds,
            console=console,
            timed_out=timed_out,
            boot_seconds=boot,
        )


# ---------------------------------------------------------------------------
# Kernel log analysis

#: Substrings that mark a kernel problem report.
PROBLEM_MARKERS: tuple[str, ...] = (
    "WARNING:", "BUG:", "Oops", "KASAN", "UBSAN", "possible circular locking",
    "possible recursive locking", "inconsistent lock state", "suspicious RCU usage",
    "unreferenced object", "general protection fault", "kernel BUG",
    "blocked for more than", "unregister_netdevice: waiting for", "Kernel panic",
    "vnet-guest: PROBLEM:",
    # The debug kernel's detectors (lab/debug_kernel.py): reference count misuse,
    # netdevice/netns reference leaks, debugobjects, RCU stalls, and a detector
    # that switched itself off (a clean log would then prove nothing).
    "refcount_t:", "ref_tracker:", "ODEBUG:", "detected stall",
    "irq lock inversion", "Kernel memory leak detector disabled",
)
#: Messages that look alarming but are expected for an unsigned out-of-tree module.
BENIGN: tuple[str, ...] = (
    "module verification failed", "loading out-of-tree module taints kernel",
    "version magic", "Disabling lock debugging due to kernel taint",
)
#: Taint flags (bit: letter, meaning) that mean something went wrong at run time.
#: Not listed, so not problems: P proprietary, C staging, I firmware workaround,
#: O out-of-tree (vnet.ko), E unsigned (vnet.ko), K livepatch, X aux, T, N test.
BAD_TAINTS: dict[int, str] = {
    1: "F (module force-loaded)", 2: "S (SMP unsafe)", 3: "R (module force-unloaded)",
    4: "M (machine check)", 5: "B (bad page)", 7: "D (kernel died: oops/BUG)",
    8: "A (ACPI table overridden)", 9: "W (warning issued)", 14: "L (soft lockup)",
}
_TS = re.compile(r"^\s*(<\d+>)?\[\s*\d+\.\d+\]\s?")
_TAINT = re.compile(r"vnet-guest: kernel tainted=(\d+)")
_STACK_CONTEXT = 80  # lines after a report in which a "Call Trace:" belongs to it
_FRAMES = 12  # stack frames kept after a "Call Trace:" line


def kernel_problems(log: str) -> list[str]:
    """Lines of a guest kernel log that report a kernel problem.

    Matches warnings, BUGs, oopses, sanitizer and lockdep reports, kmemleak
    leaks, RCU stalls, hung tasks, reference count and tracker reports and
    netdevice refcount leaks; a "Call Trace:" (or kmemleak's "backtrace:") with its
    first frames only when it belongs to one of those, since sysrq and
    informational dumps print traces too.  The taint line the guest's /init
    logs at the end turns bad taint flags into problems, which catches reports
    that scrolled out of the ring buffer.  Messages about loading an unsigned
    out-of-tree module are expected and ignored.
    """
    problems: list[str] = []
    lines = log.splitlines()
    last_report = -_STACK_CONTEXT - 1
    i = 0
    while i < len(lines):
        line = lines[i]
        body = _TS.sub("", line)
        m = _TAINT.search(body)
        if m:
            mask = int(m.group(1))
            bad = [desc for bit, desc in BAD_TAINTS.items() if mask & (1 << bit)]
            if bad:
                problems.append(f"kernel tainted={mask}: " + ", ".join(bad))
        elif any(b in body for b in BENIGN):
            pass
        elif any(marker in body for marker in PROBLEM_MARKERS):
            problems.append(line.rstrip())
            last_report = i
        elif ("Call Trace:" in body or body.strip() == "backtrace:") \
                and i - last_report <= _STACK_CONTEXT:
            problems.append(line.rstrip())
            j = i + 1
            while j < len(lines) and j - i <= _FRAMES:
                frame = _TS.sub("", lines[j])
                if not frame.startswith((" ", "\t")):
                    break
                problems.append(lines[j].rstrip())
                j += 1
            i = j
            continue
        i += 1
    return problems
