"""Simulated vnet hosts in network namespaces, for the tests, the demo and the
benchmarks.  Not installed: it is a test bench, not part of what runs on a host.

One module per concern: ``netns`` (namespaces and reaching into them), ``links``
(``Interface``, ``Link``), ``nodes`` (``Switch``, ``Host``, ``VM``), ``procs`` (the
programs a lab runs), ``clean`` (removing what runs left behind), ``ping`` and
``lab`` (``Lab``, which builds and tears down).  The main names are here too."""
from lab.clean import cleanup_stale
from lab.lab import Lab
from lab.links import Interface, Link
from lab.nodes import VM, Host, Node, NodeRef, Switch
from lab.ping import PingResult, parse_ping

__all__ = [
    "VM",
    "Host",
    "Interface",
    "Lab",
    "Link",
    "Node",
    "NodeRef",
    "PingResult",
    "Switch",
    "cleanup_stale",
    "parse_ping",
]
