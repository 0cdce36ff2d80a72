"""`vn capture` with the kernel module as every host's datapath: the vnetd scenario
(tests/netns/test_capture.py) run unchanged; the module's socket endpoints are left
out there until the module has them."""
from __future__ import annotations

from netns.test_capture import test_vn_capture_on_every_point_read_by_tshark  # noqa: F401  (collected here)
