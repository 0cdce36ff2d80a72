"""Split the kernel-module tests between the host and the QEMU guest.

Tests under ``in_guest/`` need the stock Debian kernel (to load kmod/vnet.ko), so
on the host they are not collected at all: ``test_guest.py`` boots the guest
and runs them there, where guest.py sets ``VNET_IN_GUEST=1``.  Inside the guest
the roles swap: ``test_guest.py`` must not try to boot a guest of its own.
"""
from __future__ import annotations

import os

collect_ignore = ["test_guest.py"] if os.environ.get("VNET_IN_GUEST") else ["in_guest"]
