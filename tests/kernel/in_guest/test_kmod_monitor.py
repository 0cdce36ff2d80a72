"""`vn monitor` on the module: the vnetd scenario of tests/netns/test_monitor.py run
unchanged with module-backed hosts, its MAC changes coming from the module's
multicast group "monitor"."""
from __future__ import annotations

from netns.test_monitor import test_monitor_reports_moves_flapping_and_drops  # noqa: F401  (collected here)
