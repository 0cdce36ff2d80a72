"""The isolation probe with the kernel module as every host's datapath: the hosts are
not on their vnets (doc/attach.md), on a bridge vnet makes or one that was there."""
from __future__ import annotations

from netns.test_isolation import (  # noqa: F401  (collected here, with the module)
    test_a_bridge_that_was_there_keeps_only_what_an_admin_gave_it,
    test_an_admin_puts_the_host_on_a_vnet_by_giving_the_bridge_an_address,
    test_nothing_of_the_hosts_answers_a_vm,
)
