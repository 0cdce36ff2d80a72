"""vnetd's fast path: tc/eBPF programs that carry known unicast without user space."""
