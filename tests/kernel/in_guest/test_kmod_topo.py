"""`vn topo` on module hosts (doc/topology.md): a containerlab file over two hosts
(namespace nodes, veths whose host ends are the module's ports, the vnets the
equivalent native file gives) and a failed apply rolled back to nothing.  The
leaf-spine lab with BIRD is tests/netns/test_topo.py, on vnetd: the guest has no
routing daemon, and the control side is the same for both datapaths."""
from __future__ import annotations

from netns.test_topo import (  # noqa: F401  (collected here, with the module)
    test_containerlab_file_over_two_hosts,
    test_failed_apply_leaves_nothing,
)
