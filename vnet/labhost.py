"""A simulated vnet host: a lab namespace with its own state directory and vnetd.

Shared by the demo, the benchmark and the tests, so all three drive vnetd the way a
user does: start the daemon, then run `vn` commands against that host.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from vnet.lab import Host, Lab


class VnetHost:
    """A lab host with its own state directory and vnetd, driven through `vn`."""

    def __init__(self, lab: Lab, host: Host, state_dir: Path) -> None:
        self.lab = lab
        self.host = host
        self.state_dir = state_dir
        self.proc: subprocess.Popen | None = None
        self.log = state_dir / "vnetd.log"

    @property
    def ip(self) -> str:
        return self.host.ip

    @property
    def name(self) -> str:
        return self.host.name

    def start(self, *extra: str, timeout: float = 10.0) -> None:
        """Start vnetd and wait until its control socket answers."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            self.proc = self.lab.popen(
                self.host, [sys.executable, "-m", "vnet.vnetd", "--state-dir", str(self.state_dir),
                            "-a", self.ip, "-V", *extra], stdout=log, stderr=subprocess.STDOUT)
        sock = self.state_dir / "vnetd.sock"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vnetd on {self.name} exited: {self.log.read_text()}")
            if sock.exists():
                probe = socket.socket(socket.AF_UNIX)
                try:
                    probe.connect(str(sock))
                    return
                except OSError:
                    pass
                finally:
                    probe.close()
            time.sleep(0.05)
        raise TimeoutError(f"vnetd on {self.name} did not start: {self.log.read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(10)

    def vn(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = self.lab.run(self.host, [sys.executable, "-m", "vnet.cli", "--state-dir",
                                     str(self.state_dir), *args], timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"vn {' '.join(args)} on {self.name} failed ({r.returncode}): {r.stderr}")
        return r

    def vn_json(self, *args: str) -> list[dict]:
        return json.loads(self.vn(*args, "--json").stdout)

    def counters(self) -> dict[str, int]:
        """Counters and drops of `vn stats` merged, drops prefixed with 'drop:'."""
        out: dict[str, int] = {}
        for rec in self.vn_json("stats"):
            prefix = "drop:" if rec["type"] == "drops" else ""
            out.update({prefix + k: v for k, v in rec.items() if k != "type"})
        return out
