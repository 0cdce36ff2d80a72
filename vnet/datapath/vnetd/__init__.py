"""vnetd, the user-space datapath and its control server."""
