"""`python -m vnet.datapath.vnetd`: vnetd without its console script (the test lab and
`network-vnet` start it this way, with the interpreter they run on)."""
from vnet.datapath.vnetd.daemon import main

main()
