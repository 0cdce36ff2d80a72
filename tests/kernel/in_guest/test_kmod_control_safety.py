"""Safe deletes, idempotent creates and the peer rule, run unchanged with the kernel
module as every host's datapath (its peer refusals are the module's own C code), and
an unprivileged user against the module."""
from __future__ import annotations

from netns.test_peer_rule import (  # noqa: F401  (collected here, with the module)
    test_a_bad_persisted_peer_is_reported_not_restored,
    test_a_host_has_at_most_max_peers,
    test_a_name_is_resolved_once_and_vn_says_to_what,
    test_the_datapath_refuses_the_same_for_requests_from_elsewhere,
    test_vn_refuses_bad_peers_before_anything_changes,
)
from netns.test_permissions import NOBODY, host_dir, one_line, run_all_as  # noqa: F401  (host_dir: a fixture)
from netns.test_vnet_delete import (  # noqa: F401
    test_delete_refuses_to_cut_off_vms_and_recreating_puts_them_back,
    test_delete_without_other_interfaces_needs_no_force,
    test_exist_ok_accepts_the_same_vnet_and_names_what_differs,
)


def test_unprivileged_module_commands_say_they_need_root(lab, make_hosts, host_dir):  # noqa: F811
    (h,) = make_hosts(1)
    h.vn("vnet-create", "97")
    vn = ["vnet.cli.vn", "--datapath", "kmod", "--state-dir", str(host_dir)]
    need_root = "Operation not permitted: the vnet module's commands need root (or CAP_NET_ADMIN)"
    # The group of the endpoints' frames is joined directly (vn capture fails before
    # it, at the listings), through timeit: run_all_as runs modules, as `python -m`.
    join = "from vnet.datapath.kmod.client import KmodClient; next(KmodClient().endpoint_frames())"
    *said, joined = run_all_as(lab, h.host, NOBODY, [
        [*vn, "varp-flush"],
        [*vn, "peer-add", "10.0.0.9"],
        # The MAC events' multicast group is CAP_NET_ADMIN's, as the VARP cache is:
        # joining it unprivileged fails at the bind, before vn polls anything.
        [*vn, "monitor"],
        ["vnet.host.hook", "stop", "--datapath", "kmod", "--state-dir", str(host_dir)],
        ["timeit", "-n", "1", "-r", "1", join],
    ])
    for r, text in zip(said, [
        f"vn: cannot flush the VARP cache: {need_root}",
        f"vn: {host_dir}/lock: Permission denied: changing the vnet state needs root",
        f"vn: cannot listen to the vnet module's MAC events: {need_root}",
        f"network-vnet: cannot list the vnet module's vnets: {need_root}",
    ], strict=True):
        one_line(r, text)
    assert joined.returncode == 1 and joined.stderr.strip().endswith(
        f"vnet.errors.DatapathError: cannot capture the vnet module's endpoint frames: {need_root}"), joined
    assert h.vn_json("peers") == [] and len(h.vn_json("vnets")) == 1
