"""Build a debug kernel for the module's guest tests: Debian's 6.1 with the bug detectors on.

Why: the guest normally boots Debian's stock kernel (lab/guest.py), which has
none of the kernel's own bug detectors enabled, so a use-after-free, a lock-order
inversion, a sleep in atomic context, a leaked object or a leaked netdevice/netns
reference in kmod/ passes every functional test unseen.  This builds Debian's own
source of the same series (package ``linux-source-6.1``) with KASAN, KFENCE,
lockdep (PROVE_LOCKING), DEBUG_ATOMIC_SLEEP, kmemleak, the netdevice and netns
reference trackers and DEBUG_OBJECTS; lab/guest.py boots it when
``$VNET_GUEST_KERNEL`` names the directory this prints, and the module's guest
tests then run under it unchanged::

    python -m lab.debug_kernel                     # build, or find in the cache
    VNET_GUEST_KERNEL=$(python -m lab.debug_kernel) VNET_GUEST_SHARDS=1 \\
        python -m pytest -q -p no:cacheprovider tests/kernel/test_guest.py

How, and why so:

* The configuration is ``allnoconfig`` plus lab/debug_kernel.config: only what
  the guest needs (virtio-pci and 9p to reach the host's files, the network
  drivers the lab uses, the module's AEAD) plus the detectors, all built in, so
  the guest loads no stock module and the build stays small (still long at
  ``nice -n 19`` on 2 shared cores: over an hour while other work keeps them
  busy; an interrupted build resumes where it stopped).  Every line of the fragment is checked in
  the resulting .config: Kconfig silently drops an option whose dependencies are
  not met, and a detector missing that way would make a clean run mean nothing.
* The build is cached under the guest cache (``$VNET_GUEST_CACHE``, default
  /var/cache/vnet-guest) in ``debug-kernel/<hash>``, the hash taken over the
  resulting .config (which names the compiler) and the source package version:
  ``build/`` is kbuild's object tree (``O=``, fully built, so also the KDIR the
  module builds against), ``root/`` holds ``boot/vmlinuz-<release>`` and
  ``lib/modules/<release>`` as lab/guest.py expects of any kernel it boots.
  The unpacked source is shared, in ``debug-kernel/src/<package>_<version>/``.
* The source comes from ``apt-get download linux-source-6.1`` (never
  installed), or from ``--source DIR`` (an unpacked tree, e.g. what the
  installed package leaves in /usr/src after unpacking its tarball).
* The build runs under ``nice -n 19`` with ``-j2`` (``--jobs``): it is long and
  other work shares the machine.

Prerequisites (Debian packages): gcc, make, flex, bison, bc, libelf-dev,
libssl-dev, xz-utils, dpkg and apt; ``setup.sh debug-kernel`` installs them.
Public API: :func:`build`, :func:`source_tree`, :func:`configure`.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lab import guest

__all__ = ["FRAGMENT", "SOURCE_PACKAGE", "DebugKernelError", "build", "configure", "source_tree"]

#: The Kconfig fragment applied on top of allnoconfig.
FRAGMENT = Path(__file__).with_name("debug_kernel.config")
#: Debian's source package of the guest's kernel series.
SOURCE_PACKAGE = "linux-source-6.1"
#: Host tools the build needs, with the Debian package that brings each.
BUILD_TOOLS = {"gcc": "gcc", "make": "make", "flex": "flex", "bison": "bison", "bc": "bc",
               "xz": "xz-utils", "dpkg-deb": "dpkg", "apt-get": "apt", "depmod": "kmod"}
#: Development headers the build needs (objtool: libelf; certificates tooling: libssl).
BUILD_HEADERS = {"/usr/include/libelf.h": "libelf-dev", "/usr/include/openssl/ssl.h": "libssl-dev"}
#: Parallel jobs by default: the project's machines have 2 cores, shared.
DEFAULT_JOBS = 2


class DebugKernelError(guest.GuestError):
    """The debug kernel could not be built; the message says which step and why."""


def _base() -> Path:
    return guest.cache_root() / "debug-kernel"


def _say(msg: str) -> None:
    print(f"debug-kernel: {msg}", file=sys.stderr, flush=True)


def check_tools() -> None:
    """Raise DebugKernelError naming every missing build prerequisite at once."""
    missing = [f"{tool} (package {pkg})" for tool, pkg in BUILD_TOOLS.items()
               if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()
               and not Path("/sbin", tool).exists()]
    missing += [f"{path} (package {pkg})" for path, pkg in BUILD_HEADERS.items()
                if not Path(path).exists()]
    if missing:
        raise DebugKernelError(
            "missing to build the debug kernel: " + ", ".join(missing)
            + "; install them with `sudo ./setup.sh debug-kernel` (or apt-get install"
            " --no-install-recommends " + " ".join(sorted(set(BUILD_TOOLS.values())
                                                         | set(BUILD_HEADERS.values()))) + ")")


def _make(src: Path, args: list[str], log: Path, what: str) -> None:
    """Run kbuild niced, appending its output to ``log``; a failure quotes the log's tail."""
    cmd = ["nice", "-n", "19", "make", "-C", str(src), *args]
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        cp = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if cp.returncode != 0:
        raise DebugKernelError(f"{what} failed (exit status {cp.returncode}); tail of {log}:\n"
                               + guest._tail(guest._read(log), 40))


def source_tree(update: bool = False) -> tuple[Path, str]:
    """The unpacked kernel source and its identity (package file name), downloading on first use.

    Once a source is unpacked it is used until ``update`` asks for the archive's
    current one: a new Debian revision means a full rebuild, so it happens when
    someone asks, not whenever the archive moves.
    """
    src_base = _base() / "src"
    done = sorted(src_base.glob(f"{SOURCE_PACKAGE}_*/complete"), key=lambda p: p.stat().st_mtime)
    if done and not update:
        return done[-1].parent / SOURCE_PACKAGE, done[-1].parent.name
    src_base.mkdir(parents=True, exist_ok=True)
    with guest._locked(src_base / "lock"), tempfile.TemporaryDirectory(dir=src_base,
                                                                       prefix="fetch-") as tmp:
        tmpdir = Path(tmp)
        os.chmod(tmpdir, 0o755)  # apt's _apt user must be able to write here
        _say(f"downloading {SOURCE_PACKAGE}")
        deb = guest._apt_download(SOURCE_PACKAGE, None, tmpdir)
        ident = deb.name.removesuffix("_all.deb").replace("%3a", ":")
        dest = src_base / ident
        if (dest / "complete").exists():
            return dest / SOURCE_PACKAGE, ident
        _say(f"unpacking {deb.name}")
        staged = tmpdir / "tree"
        staged.mkdir()
        script = (f"dpkg-deb --fsys-tarfile {deb} | tar -xO ./usr/src/{SOURCE_PACKAGE}.tar.xz"
                  f" | tar -xJ -C {staged}")
        cp = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, check=False)
        if cp.returncode != 0 or not (staged / SOURCE_PACKAGE / "Makefile").exists():
            raise DebugKernelError(f"unpacking {deb.name} failed: {cp.stderr.strip()}")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir()
        (staged / SOURCE_PACKAGE).rename(dest / SOURCE_PACKAGE)
        (dest / "complete").write_text(deb.name + "\n")
    return dest / SOURCE_PACKAGE, ident


def _fragment_options(text: str) -> dict[str, str | None]:
    """``CONFIG_X=value`` and ``# CONFIG_X is not set`` (value None) lines of a config."""
    opts: dict[str, str | None] = {}
    for line in text.splitlines():
        if m := re.match(r"(CONFIG_\w+)=(.*)$", line):
            opts[m.group(1)] = m.group(2)
        elif m := re.match(r"# (CONFIG_\w+) is not set$", line):
            opts[m.group(1)] = None
    return opts


def configure(src: Path, workdir: Path) -> str:
    """The .config text of allnoconfig plus the fragment, checked to hold every fragment line."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "config.log"
    log.unlink(missing_ok=True)
    os.environ["KCONFIG_ALLCONFIG"] = str(FRAGMENT)
    try:
        _make(src, [f"O={workdir}", "allnoconfig"], log, "make allnoconfig")
    finally:
        del os.environ["KCONFIG_ALLCONFIG"]
    config = (workdir / ".config").read_text()
    got = _fragment_options(config)
    wrong = [f"{k}={'n' if v is None else v} (got {'n' if got.get(k) is None else got[k]})"
             for k, v in _fragment_options(FRAGMENT.read_text()).items() if got.get(k) != v]
    if wrong:
        raise DebugKernelError(f"{FRAGMENT.name}: Kconfig did not take " + ", ".join(wrong)
                               + " (a dependency is not met: add it to the fragment)")
    return config


def build(jobs: int = DEFAULT_JOBS, source: Path | None = None, update: bool = False) -> Path:
    """Build the debug kernel (or find it in the cache); returns the tree for $VNET_GUEST_KERNEL."""
    check_tools()
    if source is not None:
        src, ident = source.resolve(), f"dir:{source.resolve()}"
        if not (src / "Makefile").exists():
            raise DebugKernelError(f"--source {source}: no kernel Makefile there")
    else:
        src, ident = source_tree(update)
    base = _base()
    with guest._locked(base / "config.lock"):
        config = configure(src, base / "config")
    digest = hashlib.sha256(f"{ident}\n{config}".encode()).hexdigest()[:16]
    tree = base / digest
    if (tree / "complete").exists():
        return tree
    with guest._locked(base / f"{digest}.lock"):
        if (tree / "complete").exists():
            return tree
        obj = tree / "build"
        obj.mkdir(parents=True, exist_ok=True)
        # An interrupted build resumes where it stopped: make skips what is built,
        # as long as .config is not touched (a newer .config re-runs syncconfig).
        if not (obj / ".config").exists() or (obj / ".config").read_text() != config:
            (obj / ".config").write_text(config)
        log = tree / "build.log"
        _say(f"building {ident} in {obj} with -j{jobs} (log: {log}); this takes a while, "
             "and an interrupted build resumes where it stopped")
        _make(src, [f"O={obj}", "olddefconfig"], log, "make olddefconfig")
        _make(src, [f"O={obj}", f"-j{jobs}", "bzImage", "modules", "modules_prepare"], log,
              "the kernel build")
        release = subprocess.run(["make", "-s", "-C", str(src), f"O={obj}", "kernelrelease"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        root = tree / "root"
        if root.exists():
            shutil.rmtree(root)
        _make(src, [f"O={obj}", f"INSTALL_MOD_PATH={root}", "modules_install"], log,
              "make modules_install")
        (root / "boot").mkdir(parents=True)
        shutil.copy2(obj / "arch/x86/boot/bzImage", root / "boot" / f"vmlinuz-{release}")
        (tree / "complete").write_text(release + "\n")
    _say(f"built {release}")
    return tree


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lab.debug_kernel",
        description="Build Debian's 6.1 kernel with KASAN, KFENCE, lockdep, kmemleak and the "
                    "reference trackers for the module's guest tests (cached); print the "
                    "directory to set VNET_GUEST_KERNEL to.")
    ap.add_argument("--jobs", "-j", type=int, default=DEFAULT_JOBS,
                    help=f"parallel make jobs (default {DEFAULT_JOBS})")
    ap.add_argument("--source", type=Path,
                    help="an unpacked kernel source tree to build instead of linux-source-6.1")
    ap.add_argument("--update-source", action="store_true",
                    help="download the archive's current linux-source-6.1 even if one is cached")
    args = ap.parse_args(argv)
    try:
        print(build(args.jobs, args.source, args.update_source))
    except guest.GuestError as exc:
        print(f"debug-kernel: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
