"""Simulated vnet hosts in network namespaces, for the tests, the demo and the
benchmarks.  Not installed: it is a test bench, not part of what runs on a host."""
