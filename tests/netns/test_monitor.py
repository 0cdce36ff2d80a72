"""`vn monitor --json` on a host watching the others: a VM moving, a MAC flapping, a
storm of malformed packets.  Written for both datapaths (the module's guest imports
it: tests/kernel/in_guest/test_kmod_monitor.py)."""
from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from datetime import datetime

import pytest
from conftest import EXAMPLES, needs_root
from json_contract import check

from lab.traffic import send_datagrams
from vnet.control.events import DROP_INTERVAL
from vnet.model.vnetid import VnetId

pytestmark = [needs_root, pytest.mark.root]

#: Seconds to wait for an event: generous, the machine may be loaded.
DEADLINE = 60.0


class MonitorReader:
    """A `vn monitor --json` running on a host, its events read as they come."""

    def __init__(self, lab, host) -> None:
        self.proc = host.popen_vn("monitor", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.proc.stderr.readline()  # said once it cannot miss a change
        assert "monitoring" in ready, ready + self.proc.stderr.read()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def wait_for(self, what: str, predicate) -> tuple[dict, float]:
        """The first event from now on that `predicate` accepts, and when it came."""
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                event = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no event {what} within {DEADLINE:g} s; had {self.events}") from None
            assert event is not None, f"vn monitor ended: {self.proc.stderr.read()}"
            self.events.append(event)
            if predicate(event):
                return event, time.monotonic()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_monitor_reports_moves_flapping_and_drops(lab, make_hosts):
    monitor_reports_moves_flapping_and_drops(lab, make_hosts)


def monitor_reports_moves_flapping_and_drops(lab, make_hosts, datapath: str | None = None):
    sw = lab.switch("sw")
    hosts = make_hosts(3, switch=sw, datapath=datapath)
    for h in hosts:
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    vnet = str(VnetId.parse("97"))
    mon = MonitorReader(lab, hosts[0])
    try:
        watcher = lab.vm("w", hosts[0].host, "vnet97", "10.97.0.1/24")
        vm = lab.vm("m", hosts[1].host, "vnet97", "10.97.0.2/24")
        # A VM on host 2 talks: host 1 learns it there.
        assert lab.ping(watcher, vm.ip, count=1).received == 1
        mon.wait_for("learned", lambda e: e["event"] == "learned" and e["mac"] == vm.mac
                     and e["where"] == hosts[1].ip)
        # It moves to host 3 and announces itself there, as QEMU does (its own first
        # frames there may come before).  The event's own stamp says when it came.
        lab.move_vm(vm, hosts[2].host, "vnet97", announce=False)
        start = time.time()
        vm.eth0.announce(vm.mac)
        moved, _ = mon.wait_for("moved", lambda e: e["event"] == "moved" and e["mac"] == vm.mac)
        assert (moved["vnet"], moved["from"], moved["to"]) == (vnet, hosts[1].ip, hosts[2].ip), moved
        print(f"moved event stamped {_seconds(moved['time']) - start:.3f} s after the VM was on host 3")

        # One MAC sent from a VM on host 2 and one on host 3, in turn.
        p = lab.vm("p", hosts[1].host, "vnet97", "10.97.0.12/24")
        q = lab.vm("q", hosts[2].host, "vnet97", "10.97.0.13/24")
        mac = "02:00:00:00:0f:1a"
        mine = lambda kind: lambda e: e["event"] == kind and e.get("mac") == mac  # noqa: E731
        p.eth0.announce(mac, gaps=(0,))
        mon.wait_for("learned", mine("learned"))
        q.eth0.announce(mac, gaps=(0,))
        mon.wait_for("moved", mine("moved"))
        p.eth0.announce(mac, gaps=(0,))
        flap, _ = mon.wait_for("flapping", mine("flapping"))
        assert sorted(flap["places"]) == [hosts[1].ip, hosts[2].ip], flap
        for sender in (q, p, q):
            sender.eth0.announce(mac, gaps=(0,))
        # Quiet now; a new MAC from each VM says when their frames so far have come
        # (each host's frames reach host 1 in order).
        for i, (sender, h) in enumerate(((p, hosts[1]), (q, hosts[2]))):
            marker = f"02:00:00:00:0e:0{i}"
            sender.eth0.announce(marker, gaps=(0,))
            mon.wait_for(f"learned {marker}", lambda e, m=marker, a=h.ip: e["event"] == "learned"
                         and e["mac"] == m and e["where"] == a)

        # A storm of malformed datagrams: a few drop events, adding up to the storm.
        attacker = lab.host("x", sw, "10.0.0.66/24")
        storm = {"short": [b"\x00"] * 150, "bad-message-id": [b"\x00\x09\x00\x00" + bytes(40)] * 100}
        send_datagrams(lab, attacker, hosts[0].ip, [p for ps in storm.values() for p in ps])
        got = {reason: [] for reason in storm}

        def counted(e: dict) -> bool:
            if e["event"] == "drops" and e["reason"] in got:
                got[e["reason"]].append(e)
            return all(sum(x["count"] for x in got[r]) >= len(storm[r]) for r in storm)
        mon.wait_for("drops adding up to the storm", counted)
        for reason, sent in storm.items():
            assert sum(e["count"] for e in got[reason]) == len(sent), (reason, got[reason])
            stamps = [_seconds(e["time"]) for e in got[reason]]
            # Rate-limited: never two events of a reason within the interval.
            assert all(b - a >= DROP_INTERVAL - 0.5 for a, b in zip(stamps, stamps[1:])), got[reason]
            print(f"{reason}: {len(sent)} dropped, {len(got[reason])} events")
    finally:
        mon.stop()
    for e in mon.events:
        check("monitor", e)
    flaps = [e for e in mon.events if e["event"] == "flapping"]
    assert len(flaps) == 1, flaps


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

