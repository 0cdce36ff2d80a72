"""Capture filters: tcpdump expressions compiled by libpcap into classic BPF.

libpcap is loaded through ctypes (Debian's `libpcap0.8`; setup.sh installs it), only
when a capture starts, so nothing else in vnet needs it.  A compiled `Program` is
attached to `vn capture`'s packet sockets in the kernel (SO_ATTACH_FILTER: a frame
that does not match is never copied to user space) and is sent to vnetd, which runs
the same instructions on its socket endpoints' frames with `pcap_offline_filter`
before copying any of them."""
from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
from dataclasses import dataclass

from vnet.errors import VnetError

DLT_EN10MB = 1
#: The bytes of a frame a capture keeps: all of it, super-frames of 64 KiB included.
SNAPLEN = 262144
SO_ATTACH_FILTER = 26
_INSN = struct.Struct("=HBBI")


class FilterError(VnetError):
    """A capture filter that libpcap cannot compile, or no libpcap to compile it."""


class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _PktHdr(ctypes.Structure):
    _fields_ = [("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


_lib: ctypes.CDLL | None = None


def libpcap() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise FilterError(f"capture filters need libpcap ({name}: {e}); on Debian: "
                              "apt-get install libpcap0.8") from None
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_offline_filter.argtypes = [ctypes.POINTER(_BpfProgram), ctypes.POINTER(_PktHdr),
                                            ctypes.c_void_p]
        _lib = lib
    return _lib


@dataclass(frozen=True)
class Program:
    """A compiled filter: the classic BPF instructions (code, jt, jf, k) and the
    expression they came from (empty: every frame)."""

    expression: str
    insns: tuple[tuple[int, int, int, int], ...]

    def packed(self) -> bytes:
        """The instructions as struct sock_filter[] (also what vnetd is sent)."""
        return b"".join(_INSN.pack(*i) for i in self.insns)

    @classmethod
    def unpacked(cls, expression: str, data: bytes) -> Program:
        if not data or len(data) % _INSN.size:
            raise FilterError(f"a BPF program is a non-empty multiple of {_INSN.size} bytes, got {len(data)}")
        return cls(expression, tuple(_INSN.iter_unpack(data)))

    def attach(self, sock: socket.socket) -> None:
        """Run the program in the kernel on every frame `sock` would receive."""
        buf = ctypes.create_string_buffer(self.packed())
        fprog = struct.pack("HL", len(self.insns), ctypes.addressof(buf))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def compile_filter(expression: str, snaplen: int = SNAPLEN) -> Program:
    """Compile a tcpdump expression for Ethernet frames; FilterError with libpcap's
    message and the expression quoted if it does not compile."""
    lib = libpcap()
    pcap = lib.pcap_open_dead(DLT_EN10MB, snaplen)
    if not pcap:
        raise FilterError("libpcap could not open a handle to compile the filter with")
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(pcap, ctypes.byref(prog), expression.encode(), 1, 0xFFFFFFFF) != 0:
            why = (lib.pcap_geterr(pcap) or b"").decode(errors="replace")
            raise FilterError(f"capture filter {expression!r} does not compile: {why}")
        insns = tuple((prog.bf_insns[i].code, prog.bf_insns[i].jt, prog.bf_insns[i].jf, prog.bf_insns[i].k)
                      for i in range(prog.bf_len))
        lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(pcap)
    return Program(expression, insns)


class Matcher:
    """A Program run in user space (vnetd's socket endpoints): `matches(frame)` reads
    the frame where it lies (bytes, or a writable buffer such as a view of the receive
    buffer) and copies nothing."""

    def __init__(self, program: Program) -> None:
        self.lib = libpcap()
        n = len(program.insns)
        self._insns = (_BpfInsn * n)(*[_BpfInsn(*i) for i in program.insns])
        self._prog = _BpfProgram(n, self._insns)
        self._hdr = _PktHdr()
        self._filter = self.lib.pcap_offline_filter
        self._prog_ref = ctypes.byref(self._prog)
        self._hdr_ref = ctypes.byref(self._hdr)

    def matches(self, frame) -> bool:
        n = len(frame)
        self._hdr.caplen = self._hdr.len = n
        if isinstance(frame, bytes):
            data = frame
        else:
            try:
                data = ctypes.addressof((ctypes.c_char * n).from_buffer(frame)) if n else b""
            except TypeError:  # a read-only view: look at a copy
                data = bytes(frame)
        return self._filter(self._prog_ref, self._hdr_ref, data) != 0
