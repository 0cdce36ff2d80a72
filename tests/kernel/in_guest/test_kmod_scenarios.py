"""The vnetd scenario tests, run unchanged with the kernel module as every host's
datapath (the session fixture loads it; make_hosts builds module-backed hosts)."""
from __future__ import annotations

from netns.test_device_gone import test_a_deleted_device_stops_its_vnet  # noqa: F401  (collected here)
from netns.test_lab_protocols import (  # noqa: F401  (collected here, with the module)
    lldpd_dir,
    test_lldpd_on_two_hosts_sees_its_neighbour_through_ports,
    test_spanning_tree_blocks_a_loop_of_two_vnets,
)
from netns.test_listings import (  # noqa: F401  (collected here, with the module)
    test_brief_as_default_and_sxp_kept,
    test_brief_listings_read_like_ip_br,
    test_every_listing_matches_its_schema,
)
from netns.test_metrics import test_prometheus_page_equals_the_listings  # noqa: F401  (collected here)
from netns.test_original_hosts import (  # noqa: F401  (collected here, with the module)
    test_an_original_receiver_gets_plain_frames_and_our_hosts_super_frames,
    test_original_forwarders_relays_reach_our_vms,
)

# Jumbo frames and re-plugging: test_kmod_ports.py, through the module's own answers.
from netns.test_ports import test_host_sends_nothing_into_a_port  # noqa: F401  (collected here)
from netns.test_table_exhaustion import (  # noqa: F401  (collected here, with the module)
    test_a_hundred_thousand_made_up_macs,
    test_a_member_making_up_senders_is_held_to_the_bound,
    test_a_vm_making_up_macs_fills_only_its_vnets_share,
)
from netns.test_vnetd_net import (  # noqa: F401  (collected here, with the module)
    test_malformed_packets_are_dropped_and_counted,
    test_misconfigured_peers_do_not_loop,
    test_moved_vm_is_found_again_quickly,
    test_peers_join_subnets_without_duplicates,
    test_raw_etherip_vnet,
    test_underlay_carries_only_encapsulated_frames,
    test_vnets_reach_across_hosts_and_stay_isolated,
)
