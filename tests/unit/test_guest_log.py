"""The guest kernel-log check (lab/guest.py kernel_problems) against the debug kernel's reports.

Under the debug kernel (lab/debug_kernel.py) a module bug shows as a report of one of
the kernel's detectors rather than as a failed test, so the check must know each
report's form, keep the frames that say where, and stay quiet on what that kernel
prints when all is well.  The reports below are in the form 6.1 prints them."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab import guest

#: Lines the debug kernel prints on a clean boot and run: detectors announcing themselves.
CLEAN_DEBUG_BOOT = """\
[    0.000000] Linux version 6.1.192-vnet-debug (root@host) (gcc (Debian 12.2.0-14+deb12u1) 12.2.0) #1 SMP PREEMPT
[    0.000000] kasan: KernelAddressSanitizer initialized (generic)
[    0.012345] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar
[    0.012346] ... MAX_LOCKDEP_SUBCLASSES:  8
[    0.012347] ... MAX_LOCK_DEPTH:          48
[    0.123456] kfence: initialized - using 2097152 bytes for 255 objects at 0x(____ptrval____)-0x(____ptrval____)
[    0.234567] rcu: Preemptible hierarchical RCU implementation.
[    0.234568] rcu: 	RCU lockdep checking is enabled.
[    1.234567] kmemleak: Kernel memory leak detector initialized (mem pool available: 15859)
[    1.234568] kmemleak: Automatic memory scanning thread ended
[   20.000000] vnet: loading out-of-tree module taints kernel.
[   90.000000] vnet-guest: kmemleak: scanning
[   99.000000] vnet-guest: kmemleak: 0 suspected leaks
[   99.100000] vnet-guest: kernel tainted=4096
"""

KMEMLEAK = """\
vnet-guest: kmemleak report after the run:
unreferenced object 0xffff888006b3c200 (size 192):
  comm "python3", pid 341, jiffies 4294912345 (age 61.312s)
  hex dump (first 32 bytes):
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace:
    [<ffffffff812f6a3b>] kmalloc_trace+0x2b/0x90
    [<ffffffffa0012345>] 0xffffffffa0012345
    [<ffffffff81c1d2e4>] genl_family_rcv_msg_doit+0x1e4/0x2d0
"""

REF_TRACKER = """\
[  120.000001] unregister_netdevice: waiting for vnet97 to become free. Usage count = 2
[  120.000002] ref_tracker: netdev@ffff888006e0c5f8 has 1/1 users at
[  120.000003]      vnet_dev_hold+0x39/0x80 [vnet]
[  120.000004] ------------[ cut here ]------------
"""

RCU_STALL = """\
[  300.000001] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[  300.000002] rcu: 	1-...!: (0 ticks this GP) idle=1b4c/1/0x4000000000000000 softirq=0/0 fqs=0
"""

REFCOUNT = """\
[  150.000001] refcount_t: underflow; use-after-free.
"""

ODEBUG = """\
[  160.000001] ODEBUG: free active (active state 0) object: ffff888006b3c200 object type: timer_list hint: vnet_age+0x0/0x80 [vnet]
"""

DISABLED = """\
[   50.000001] kmemleak: Memory pool empty, consider increasing CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE
[   50.000002] kmemleak: Kernel memory leak detector disabled
"""


def test_a_clean_debug_kernel_log_has_no_problems() -> None:
    assert guest.kernel_problems(CLEAN_DEBUG_BOOT) == []


def test_kmemleak_leaks_are_problems_with_their_backtrace() -> None:
    problems = guest.kernel_problems(CLEAN_DEBUG_BOOT + KMEMLEAK)
    assert problems[0].startswith("unreferenced object 0xffff888006b3c200")
    assert "  backtrace:" in problems
    assert "    [<ffffffff81c1d2e4>] genl_family_rcv_msg_doit+0x1e4/0x2d0" in problems


@pytest.mark.parametrize("report, first", [
    (REF_TRACKER, "unregister_netdevice: waiting for vnet97"),
    (RCU_STALL, "rcu: INFO: rcu_preempt detected stalls"),
    (REFCOUNT, "refcount_t: underflow"),
    (ODEBUG, "ODEBUG: free active"),
    (DISABLED, "kmemleak: Kernel memory leak detector disabled"),
])
def test_detector_reports_are_problems(report: str, first: str) -> None:
    problems = guest.kernel_problems(CLEAN_DEBUG_BOOT + report)
    assert problems and first in problems[0], problems


def test_the_netdev_tracker_names_the_holder() -> None:
    problems = guest.kernel_problems(REF_TRACKER)
    assert any("ref_tracker: netdev@" in p for p in problems)


def test_own_kernel_tree_is_found_and_checked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VNET_GUEST_KERNEL", str(tmp_path))
    with pytest.raises(guest.GuestError, match="expected one kernel release"):
        guest.own_kernel()
    release = "6.1.192-vnet-debug"
    (tmp_path / "root/lib/modules" / release).mkdir(parents=True)
    with pytest.raises(guest.GuestError, match=f"vmlinuz-{release} is missing"):
        guest.own_kernel()
    (tmp_path / "root/boot").mkdir()
    (tmp_path / "root/boot" / f"vmlinuz-{release}").write_bytes(b"")
    with pytest.raises(guest.GuestError, match="Module.symvers is missing"):
        guest.own_kernel()
    (tmp_path / "build").mkdir()
    (tmp_path / "build/Module.symvers").write_text("")
    tree = guest.own_kernel()
    assert tree is not None and tree.abi == release
    assert tree.kdir == tmp_path / "build"
    assert guest.guest_kernel() == tree
    monkeypatch.delenv("VNET_GUEST_KERNEL")
    assert guest.own_kernel() is None
