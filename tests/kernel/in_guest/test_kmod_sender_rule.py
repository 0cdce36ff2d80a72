"""The sender rule (doc/security.md) with the kernel module as every host's datapath:
the vnetd scenarios of tests/netns/test_sender_rule.py, run unchanged."""
from __future__ import annotations

from netns.test_sender_rule import (  # noqa: F401  (collected here, with the module)
    test_forged_senders_are_dropped_and_counted,
    test_our_own_sealed_floods_sent_back_are_dropped,
)
