"""A tiny QEMU guest with socket NICs, to test vnet's endpoints against the real QEMU.

The guest is as small as a Linux that answers ARP and ping can be: Debian's stock
kernel (the one `lab.guest` fetches for the module tests, from its cache) and an
initramfs of static busybox, the virtio-net modules and an /init that gives each NIC
its address, says `nic-guest: ready` on the serial console and then answers
commands typed on it (`stats`: every NIC's MAC and packet counters).  No disk, no
9p, no Python: under TCG it is up in seconds, so a test can kill and restart it.

QEMU runs as the invoking user and needs no privilege: socket NICs are exactly the
way to give a VM a network without root (the reason users want them).

    with NicGuest([Nic("dgram,local.type=inet,...", "52:54:00:12:00:01", "10.0.1.2/24")]) as g:
        g.wait_ready()
        ... frames through the endpoint ...
        g.stats()  # {"52:54:00:12:00:01": (rx_packets, tx_packets)}
        g.restart()  # kill -9 and start again with the same command line
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lab import guest

#: Modules /init loads, with their dependencies (resolved against the kernel's tree).
NIC_MODULES = ("virtio_pci", "virtio_net")

#: The guest's /init.  `VNETNICS` comes from the kernel command line (the kernel hands
#: unknown NAME=VALUE words to init as its environment): MAC,ADDR/LEN,MTU entries
#: joined by "+".  IPv6 is off on the command line (ipv6.disable=1), so the guest
#: sends nothing it was not asked for: ARP and ICMP replies, ARP probes.  NICs are
#: promiscuous: QEMU's virtio-net drops frames for other MACs before the guest sees
#: them, and a test must see (and count) every frame that reaches the NIC, a frame of
#: the guest's own sent back to it included.
_INIT = r"""#!/bin/busybox sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r ko; do insmod "/lib/modules/$ko" || echo "nic-guest: insmod $ko failed"; done < /modules.load
ip link set lo up
for nic in $(echo "$VNETNICS" | tr + ' '); do
    set -- $(echo "$nic" | tr , ' ')
    found=
    for d in /sys/class/net/*; do
        [ "$(cat "$d/address")" = "$1" ] || continue
        found=${d##*/}
        ip link set "$found" mtu "$3"
        ip addr add "$2" dev "$found"
        ip link set "$found" promisc on up
    done
    [ -n "$found" ] || echo "nic-guest: no NIC with MAC $1"
done
echo "nic-guest: ready"
while read -r cmd; do
    case "$cmd" in
    stats)
        for d in /sys/class/net/*; do
            echo "nic-guest: stats $(cat "$d/address") $(cat "$d/statistics/rx_packets") $(cat "$d/statistics/tx_packets")"
        done
        echo "nic-guest: end";;
    esac
done
poweroff -f
"""


@dataclass(frozen=True)
class Nic:
    """One NIC: its QEMU `-netdev` value without the id (`dgram,local.type=inet,...`,
    `socket,udp=...`, `stream,server=on,...`), its MAC and its address in the guest."""

    netdev: str
    mac: str
    address: str
    mtu: int = 1500


def build_initramfs(tree: guest.KernelTree) -> Path:
    """The cached initramfs for `tree`: busybox, the virtio-net modules, /init."""
    busybox = guest._busybox()
    if busybox is None:
        raise guest.ToolsMissing(f"static busybox not found: {guest.INSTALL_HINT}")
    mods = guest._resolve_modules(tree, NIC_MODULES)
    h = hashlib.sha256(_INIT.encode())
    h.update(busybox.read_bytes())
    for m in mods:
        h.update(f"{m}:{m.stat().st_size}".encode())
    image = guest.cache_root() / tree.abi / f"nic-initrd-{h.hexdigest()[:16]}.cpio"
    if image.exists():
        return image
    with guest._locked(guest.cache_root() / tree.abi / "lock"):
        if image.exists():
            return image
        with tempfile.TemporaryDirectory(prefix="vnet-nic-initramfs-") as tmp:
            stage = Path(tmp)
            for d in ("bin", "sbin", "dev", "proc", "sys", "lib/modules"):
                (stage / d).mkdir(parents=True, exist_ok=True)
            shutil.copy2(busybox, stage / "bin" / "busybox")
            applets = subprocess.run([str(busybox), "--list"], stdout=subprocess.PIPE,
                                     text=True, check=True).stdout.split()
            for applet in applets:
                link = stage / "bin" / applet
                if applet != "busybox" and not link.exists():
                    link.symlink_to("busybox")
            order = []
            for m in mods:
                shutil.copy2(m, stage / "lib/modules" / m.name)
                order.append(m.name)
            (stage / "modules.load").write_text("\n".join(order) + "\n")
            (stage / "init").write_text(_INIT)
            (stage / "init").chmod(0o755)
            guest.write_cpio(stage, image)
            for old in image.parent.glob("nic-initrd-*.cpio"):
                if old != image:
                    old.unlink(missing_ok=True)
    return image


def check_tools() -> None:
    """Raise guest.ToolsMissing unless QEMU, busybox and cpio are here."""
    missing = [what for what, ok in (
        ("qemu-system-x86_64 (package qemu-system-x86)", guest._qemu() is not None),
        ("a static /bin/busybox (package busybox-static)", guest._busybox() is not None),
        ("cpio (package cpio)", shutil.which("cpio") is not None),
    ) if not ok]
    if missing:
        raise guest.ToolsMissing("missing for the QEMU NIC guest: " + ", ".join(missing)
                                 + f"; {guest.INSTALL_HINT}")


class NicGuest:
    """One QEMU process running the NIC guest; its serial console is read line by line
    into `console`, and `command()` types on it."""

    def __init__(self, nics: list[Nic], mem_mb: int = 256, netns: str | None = None) -> None:
        """`netns`: the network namespace QEMU runs in (a lab host's, whose vnetd holds
        the endpoints the NICs talk to on 127.0.0.1); ours if None."""
        check_tools()
        self.nics = nics
        tree = guest.fetch_kernel()
        initrd = build_initramfs(tree)
        spec = "+".join(f"{n.mac},{n.address},{n.mtu}" for n in nics)
        append = f"console=ttyS0 quiet ipv6.disable=1 panic=-1 rdinit=/init VNETNICS={spec}"
        self.argv = ([] if netns is None else ["ip", "netns", "exec", netns]) + [
            guest._qemu() or "qemu-system-x86_64", *guest._accel(), "-smp", "1", "-m", str(mem_mb),
            "-nographic", "-no-reboot", "-nodefaults", "-monitor", "none", "-serial", "stdio",
            "-kernel", str(tree.vmlinuz), "-initrd", str(initrd), "-append", append,
        ]
        for i, n in enumerate(nics):
            # romfile= : no PXE option ROM (nothing to boot from the network here).
            self.argv += ["-netdev", f"{n.netdev},id=n{i}",
                          "-device", f"virtio-net-pci,netdev=n{i},mac={n.mac},romfile="]
        self.proc: subprocess.Popen | None = None
        self.console: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self.starts = 0
        self._mark = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.starts += 1
        self._mark = len(self.console)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True,
                                        name="nic-guest-console")
        self._reader.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\r\n")
            with self._cond:
                self.console.append(line)
                self._cond.notify_all()
        with self._cond:
            self.console.append(f"[qemu exited: {proc.wait()}]")
            self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float, since: int | None = None) -> re.Match:
        """The first console line (of this run, or from line `since`) matching `pattern`."""
        rx = re.compile(pattern)
        pos = self._mark if since is None else since
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while pos < len(self.console):
                    m = rx.search(self.console[pos])
                    pos += 1
                    if m:
                        return m
                    if self.console[pos - 1].startswith("[qemu exited"):
                        raise guest.GuestError("QEMU exited; console:\n" + self.tail())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise guest.GuestError(f"no console line {pattern!r} within {timeout:g} s;"
                                           f" console:\n{self.tail()}")
                self._cond.wait(left)

    def seen(self, pattern: str) -> bool:
        """Whether this run's console has shown a line matching `pattern` (no wait:
        for callers that run an event loop meanwhile)."""
        rx = re.compile(pattern)
        with self._cond:
            return any(rx.search(line) for line in self.console[self._mark:])

    def tail(self, n: int = 40) -> str:
        with self._cond:
            return "\n".join(self.console[-n:])

    def wait_ready(self, timeout: float = 300.0) -> None:
        self.wait_line(r"nic-guest: ready", timeout)

    def command(self, text: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def stats(self, timeout: float = 60.0) -> dict[str, tuple[int, int]]:
        """{MAC: (rx_packets, tx_packets)} of every NIC, as the guest's kernel counts."""
        since = len(self.console)
        self.command("stats")
        self.wait_line(r"nic-guest: end", timeout, since=since)
        out = {}
        with self._cond:
            lines = self.console[since:]
        for line in lines:
            m = re.search(r"nic-guest: stats (\S+) (\d+) (\d+)", line)
            if m:
                out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
        return out

    def kill(self) -> None:
        """SIGKILL, as a crash would: QEMU closes nothing cleanly."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        if self._reader is not None:
            self._reader.join(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> NicGuest:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
