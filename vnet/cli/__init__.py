"""The command-line tools: `vn` and Xen's `xm vnet-*`."""
