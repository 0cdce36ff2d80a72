"""A vnet's own multicast group with the module: the netns scenario on mixed hosts
(module, vnetd, and a module host without the vnet), and the group's checks and
listing with the module alone."""
from __future__ import annotations

from netns.test_vnet_group import (  # noqa: F401  (collected here, with the module)
    own_group_scenario,
    test_group_is_checked_restored_and_deleted_with_its_vnet,
)


def test_own_group_on_mixed_module_and_vnetd_hosts(lab, make_hosts):
    sw = lab.switch("sw")
    a = make_hosts(1, switch=sw, datapath="kmod", start=False)[0]
    b = make_hosts(1, switch=sw, first=2, datapath="vnetd", start=False)[0]
    c = make_hosts(1, switch=sw, first=3, datapath="kmod", start=False)[0]
    for h in (a, b, c):  # a generous deadline: a loaded guest starts vnetd slowly
        h.start(timeout=600)
    own_group_scenario(lab, [a, b, c])
