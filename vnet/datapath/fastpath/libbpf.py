"""The few calls of libbpf (Debian's libbpf1) vnetd needs, through ctypes.

libbpf does what is hard to get right by hand: it reads the object's BTF-defined
maps, creates them, relocates the programs and loads them, and attaches tc filters
over netlink.  We only open, load, look maps up and attach; no bcc, no compiler at
run time.  Errors come back as negative errnos (libbpf 1.0's convention), turned
into OSError here so callers handle one kind of failure.
"""
from __future__ import annotations

import ctypes
import errno
import os

#: The library's soname: Debian 12's libbpf1 is 1.1, which has every call used here.
SONAME = "libbpf.so.1"

BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2
BPF_TC_F_REPLACE = 1


class TcHook(ctypes.Structure):
    """struct bpf_tc_hook (libbpf.h)."""

    _fields_ = [("sz", ctypes.c_size_t), ("ifindex", ctypes.c_int), ("attach_point", ctypes.c_int),
                ("parent", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class TcOpts(ctypes.Structure):
    """struct bpf_tc_opts (libbpf.h)."""

    _fields_ = [("sz", ctypes.c_size_t), ("prog_fd", ctypes.c_int), ("flags", ctypes.c_uint32),
                ("prog_id", ctypes.c_uint32), ("handle", ctypes.c_uint32), ("priority", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32)]


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """libbpf, loaded once; OSError if the host has none."""
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL(SONAME, use_errno=True)
        except OSError:
            raise OSError(errno.ENOENT, f"{SONAME} not found (Debian: apt install libbpf1)") from None
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for name, res, args in (
                ("bpf_object__open_file", vp, [cp, vp]),
                ("bpf_object__load", ci, [vp]),
                ("bpf_object__close", None, [vp]),
                ("bpf_object__find_program_by_name", vp, [vp, cp]),
                ("bpf_object__find_map_by_name", vp, [vp, cp]),
                ("bpf_program__fd", ci, [vp]),
                ("bpf_map__fd", ci, [vp]),
                ("bpf_map__value_size", ctypes.c_uint32, [vp]),
                ("bpf_map_update_elem", ci, [ci, vp, vp, ctypes.c_uint64]),
                ("bpf_map_lookup_elem", ci, [ci, vp, vp]),
                ("bpf_map_delete_elem", ci, [ci, vp]),
                ("bpf_tc_hook_create", ci, [vp]),
                ("bpf_tc_attach", ci, [vp, vp]),
                ("bpf_tc_detach", ci, [vp, vp]),
                ("libbpf_num_possible_cpus", ci, []),
                ("libbpf_set_print", vp, [vp])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        lib.libbpf_set_print(None)  # its messages would go to our stderr; errnos say enough
        _lib = lib
    return _lib


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


class Map:
    """One of the object's maps, by its fd: fixed-size keys and values as bytes."""

    def __init__(self, fd: int, value_size: int, per_cpu: bool = False) -> None:
        self.fd = fd
        # A per-CPU map's value is one slot per possible CPU, each rounded up to 8.
        self.cpus = library().libbpf_num_possible_cpus() if per_cpu else 1
        self.slot = (value_size + 7) & ~7 if per_cpu else value_size
        self.value_size = value_size
        self._value = ctypes.create_string_buffer(self.slot * self.cpus)

    def update(self, key: bytes, value: bytes) -> None:
        _check(library().bpf_map_update_elem(self.fd, key, value, 0), "bpf map update")

    def delete(self, key: bytes) -> bool:
        """False if there was no such key."""
        rc = library().bpf_map_delete_elem(self.fd, key)
        if rc == -errno.ENOENT:
            return False
        _check(rc, "bpf map delete")
        return True

    def lookup(self, key: bytes) -> bytes | None:
        """The value (of a per-CPU map: every CPU's slot, one after the other), or None."""
        rc = library().bpf_map_lookup_elem(self.fd, key, self._value)
        if rc == -errno.ENOENT:
            return None
        _check(rc, "bpf map lookup")
        return self._value.raw

    def per_cpu(self, key: bytes) -> list[bytes]:
        raw = self.lookup(key)
        if raw is None:
            return []
        return [raw[i * self.slot:i * self.slot + self.value_size] for i in range(self.cpus)]


class BpfObject:
    """A BPF object file, opened and loaded: its programs' and maps' fds by name."""

    def __init__(self, path: str) -> None:
        lib = library()
        ctypes.set_errno(0)
        self.obj = lib.bpf_object__open_file(path.encode(), None)
        if not self.obj:
            err = ctypes.get_errno() or errno.EINVAL
            raise OSError(err, f"cannot open {path}: {os.strerror(err)}")
        try:
            _check(lib.bpf_object__load(self.obj), "the kernel refused the programs")
        except OSError:
            self.close()
            raise

    def program_fd(self, name: str) -> int:
        prog = library().bpf_object__find_program_by_name(self.obj, name.encode())
        if not prog:
            raise OSError(errno.ENOENT, f"no program {name} in the object")
        return _check(library().bpf_program__fd(prog), f"program {name}")

    def map(self, name: str, per_cpu: bool = False) -> Map:
        lib = library()
        m = lib.bpf_object__find_map_by_name(self.obj, name.encode())
        if not m:
            raise OSError(errno.ENOENT, f"no map {name} in the object")
        return Map(_check(lib.bpf_map__fd(m), f"map {name}"), lib.bpf_map__value_size(m), per_cpu)

    def close(self) -> None:
        """Close the object: programs and maps go once no tc filter holds them."""
        if self.obj:
            library().bpf_object__close(self.obj)
            self.obj = None


def _hook(ifindex: int, point: int) -> TcHook:
    return TcHook(ctypes.sizeof(TcHook), ifindex, point, 0, 0)


def tc_attach(ifindex: int, point: int, prog_fd: int, handle: int, priority: int) -> bool:
    """Attach a program as a direct-action tc filter (handle, priority) of the device's
    clsact qdisc, made if there is none; a filter of ours left by an earlier run is
    replaced, others are left alone.  Returns whether the qdisc was made here."""
    lib = library()
    hook = _hook(ifindex, point)
    rc = lib.bpf_tc_hook_create(ctypes.byref(hook))
    if rc not in (0, -errno.EEXIST):
        _check(rc, "cannot add a clsact qdisc")
    opts = TcOpts(ctypes.sizeof(TcOpts), prog_fd, BPF_TC_F_REPLACE, 0, handle, priority, 0)
    _check(lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)), "cannot attach a tc filter")
    return rc == 0


def tc_detach(ifindex: int, point: int, handle: int, priority: int) -> bool:
    """Remove our filter; False if it was not there (the device went, say)."""
    hook = _hook(ifindex, point)
    opts = TcOpts(ctypes.sizeof(TcOpts), 0, 0, 0, handle, priority, 0)
    rc = library().bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))
    return rc == 0
