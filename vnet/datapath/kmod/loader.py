"""Loading and unloading the vnet kernel module, and finding the module file.

`insmod` and `rmmod` use finit_module(2) and delete_module(2) directly, so `vn` needs
no kmod tools, and their errors say what to do in vnet's words.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
from pathlib import Path

from vnet.errors import DatapathError
from vnet.model.addr import is_multicast_ipv4, parse_ipv4

MODULE_NAME = "vnet"

#: finit_module(2) has no libc wrapper; its number per architecture.
_NR_FINIT_MODULE = {"x86_64": 313, "aarch64": 273, "riscv64": 273, "loongarch64": 273,
                    "i386": 350, "i686": 350, "armv7l": 379, "armv6l": 379,
                    "ppc64le": 353, "ppc64": 353, "s390x": 344}
_MODULE_INIT_COMPRESSED_FILE = 4
_COMPRESSED = (".xz", ".zst", ".gz")
SOURCE_TREE = Path(__file__).resolve().parents[3]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def module_params(params: str) -> str:
    """Check the parameters for the module: only varp_mcaddr=ADDR, a multicast IPv4
    address.  Returns them normalised (dotted quad), as the module's parser wants."""
    out: dict[str, str] = {}
    for word in params.split():
        name, sep, value = word.partition("=")
        if name != "varp_mcaddr" or not sep:
            raise DatapathError("EINVAL", f"unknown module parameter '{word}': the vnet module takes "
                                "only varp_mcaddr=ADDR")
        if name in out:
            raise DatapathError("EINVAL", f"module parameter {name} is given twice")
        try:
            addr = parse_ipv4(value)
        except ValueError as e:
            raise DatapathError("EINVAL", f"module parameter {word}: {e}") from None
        if not is_multicast_ipv4(addr):
            raise DatapathError("EINVAL", f"module parameter {word}: {addr} is not a multicast "
                                "address (224.0.0.0/4)")
        out[name] = addr
    return " ".join(f"{k}={v}" for k, v in out.items())


def installed_module(modules: Path) -> Path | None:
    """vnet.ko as depmod listed it for a kernel (`modules` = /lib/modules/RELEASE):
    updates/ (DKMS) first, then extra/, then anywhere else."""
    try:
        lines = (modules / "modules.dep").read_text().splitlines()
    except OSError:
        return None
    found = [line.split(":", 1)[0] for line in lines
             if line.split(":", 1)[0].rsplit("/", 1)[-1] in [f"{MODULE_NAME}.ko" + c for c in ("", *_COMPRESSED)]]
    if not found:
        return None
    found.sort(key=lambda p: (not p.startswith("updates/"), not p.startswith("extra/"), p))
    return modules / found[0]


def default_module_path(tree: Path = SOURCE_TREE, modules: Path | None = None) -> Path:
    """The module to load: kmod/vnet.ko built in this source tree (when vn runs from one),
    else the one installed for the running kernel."""
    source = (tree / "kmod" / "Kbuild").is_file()
    built = tree / "kmod" / f"{MODULE_NAME}.ko"
    if source and built.is_file():
        return built
    modules = modules or Path("/lib/modules") / os.uname().release
    found = installed_module(modules)
    if found is not None:
        return found
    where = f"neither {built} nor one" if source else "none"
    build = (f"build it with 'make -C {built.parent}'" if source
             else "install it with 'make -C kmod dkms-install' in a vnet source tree")
    raise DatapathError("ENOENT", f"no vnet module to load: {where} installed for this kernel "
                        f"({modules}/modules.dep); {build}, or give its path with --module")


def module_depends(path: Path) -> list[str]:
    """The modules `path` needs loaded first (its .modinfo ``depends=``), as kbuild's
    modpost listed them.  A compressed module is not read: none listed."""
    if path.suffix in _COMPRESSED:
        return []
    try:
        data = path.read_bytes()
    except OSError:
        return []
    at = data.find(b"\0depends=")
    if at < 0:
        return []
    value = data[at + len(b"\0depends="):data.index(b"\0", at + 1)].decode(errors="replace")
    return [name for name in value.split(",") if name]


def _module_name(path: str) -> str:
    """The kernel's name of a module file: kernel/lib/crypto/libchacha.ko -> libchacha,
    with '-' as '_' (as /sys/module spells it)."""
    name = path.rsplit("/", 1)[-1]
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


def _finit(path: Path, params: str) -> int:
    """finit_module(2) of `path`: 0 or the errno."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DatapathError("ENOENT", f"{path}: no such module file") from None
    except OSError as e:
        raise DatapathError.from_os_error(e, f"cannot open {path}") from None
    nr = _NR_FINIT_MODULE.get(platform.machine())
    if nr is None:
        os.close(fd)
        raise DatapathError("ENOSYS", f"vn does not know finit_module's number on {platform.machine()}")
    flags = _MODULE_INIT_COMPRESSED_FILE if path.suffix in _COMPRESSED else 0
    try:
        rc = _libc().syscall(nr, fd, params.encode(), flags)
        err = ctypes.get_errno()
    finally:
        os.close(fd)
    return 0 if rc == 0 else err


def load_depends(path: Path, modules: Path | None = None, sys_module: Path = Path("/sys/module")) -> list[str]:
    """Load the stock modules `path` depends on (the ChaCha20-Poly1305 library and its
    arch code, since the module seals with it), each after its own dependencies as
    modules.dep of the running kernel (`modules` = /lib/modules/RELEASE) lists them, as
    modprobe would, so `vn insmod` needs no kmod tools.  Loaded or built-in ones are
    skipped.  Returns the names still missing: not loaded and not found."""
    wanted = [name.replace("-", "_") for name in module_depends(path)]
    if not wanted:
        return []
    modules = modules or Path("/lib/modules") / os.uname().release
    table: dict[str, list[str]] = {}
    try:
        for line in (modules / "modules.dep").read_text().splitlines():
            target, sep, deps = line.partition(":")
            if sep:
                table[_module_name(target)] = [target, *deps.split()]
    except OSError:
        pass
    missing = []
    for name in wanted:
        if (sys_module / name).exists():
            continue
        entry = table.get(name)
        if entry is None:
            missing.append(name)
            continue
        # modules.dep lists a module's dependencies so that the last loads first.
        for file in [*reversed(entry[1:]), entry[0]]:
            if not (sys_module / _module_name(file)).exists():
                err = _finit(modules / file, "")
                if err not in (0, errno.EEXIST):
                    missing.append(_module_name(file))
    return missing


def insmod(path: Path | None = None, params: str = "") -> Path:
    """Load the module (finit_module), after the stock modules it depends on; returns
    the file loaded."""
    params = module_params(params)
    path = path or default_module_path()
    missing = load_depends(path) if path.is_file() else []
    err = _finit(path, params)
    if err == 0:
        return path
    messages = {
        errno.EEXIST: f"module {MODULE_NAME} is already loaded",
        errno.ENOSYS: f"this kernel ({os.uname().release}) cannot load modules: it was built without "
                      "module support",
        errno.EPERM: "loading a module needs root (CAP_SYS_MODULE), and module loading must not be disabled",
        errno.ENOEXEC: f"{path} is not a module this kernel ({os.uname().release}) can load; rebuild it "
                       "with 'make -C kmod'",
    }
    if missing:
        messages[errno.ENOENT] = (f"{path} needs the modules {', '.join(missing)}, which could not be "
                                  f"loaded; try 'modprobe -a {' '.join(missing)}'")
    raise DatapathError(errno.errorcode.get(err, "EIO"),
                        messages.get(err, f"cannot load {path}: {os.strerror(err)}"))


def rmmod() -> None:
    """Unload the module; refuses at once rather than waiting if it is in use."""
    if _libc().delete_module(MODULE_NAME.encode(), os.O_NONBLOCK) == 0:
        return
    err = ctypes.get_errno()
    messages = {
        errno.ENOENT: f"module {MODULE_NAME} is not loaded",
        errno.EWOULDBLOCK: f"module {MODULE_NAME} is in use; stop what uses it and try again",
        errno.EBUSY: f"module {MODULE_NAME} is busy being loaded or unloaded; try again",
        errno.EPERM: "unloading a module needs root (CAP_SYS_MODULE)",
        errno.ENOSYS: f"this kernel ({os.uname().release}) has no module support",
    }
    raise DatapathError(errno.errorcode.get(err, "EIO"),
                        messages.get(err, f"cannot unload module {MODULE_NAME}: {os.strerror(err)}"))
