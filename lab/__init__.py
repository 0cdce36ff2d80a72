"""Simulated vnet hosts in network namespaces, for the tests, the demo and the
benchmarks.  Not installed: it is a test bench, not part of what runs on a host.

One module per concern: ``netns`` (namespaces and reaching into them), ``links``
(``Interface``, ``Link``), ``nodes`` (``Switch``, ``Host``, ``VM``), ``procs`` (the
programs a lab runs), ``clean`` (removing what runs left behind), ``ping``, and
``lab``: ``Lab``, which builds, tracks and tears down, and which also exports the
names tests import from it.  ``guest`` boots the QEMU guest that the kernel-module
tests and benchmark run in."""
