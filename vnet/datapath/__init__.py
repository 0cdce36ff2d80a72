"""The two datapaths behind `vnet.control.datapath.Datapath`: `vnetd` (user space) and
`kmod` (the client of the kernel module)."""
