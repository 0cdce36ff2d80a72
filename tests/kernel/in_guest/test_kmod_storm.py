"""The live storm (tests/netns/test_storm.py) with the kernel module as every host's
datapath: the module keeps serving and counts every packet; test_guest.py checks that
the guest's kernel log stays free of warnings.  The long run (10^5 packets) with
VNET_LONG_TESTS=1."""
from __future__ import annotations

from netns.test_storm import (  # noqa: F401  (collected here, with the module)
    test_a_long_storm_of_hostile_messages,
    test_a_storm_of_hostile_messages_leaves_the_host_serving_and_counting,
)
