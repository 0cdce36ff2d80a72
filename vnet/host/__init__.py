"""Host integration: network devices, bring-up at boot (`network-vnet`), and vnetd as a
service."""
