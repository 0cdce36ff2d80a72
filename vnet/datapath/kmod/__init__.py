"""The kernel module's side in user space: its generic netlink client and its loader."""
