"""vnet/host/netdev.py without root: what keeps the host off its vnets fails loudly."""
from __future__ import annotations

import pytest

from vnet.errors import DatapathError
from vnet.host import netdev


def test_a_setting_that_cannot_be_written_is_an_error_naming_it() -> None:
    """Never ignored: a bridge whose ARP or IPv6 could not be set would leave the host
    on its vnet."""
    with pytest.raises(DatapathError) as e:
        netdev.set_devconf("ipv4", "vnet-nosuch0", netdev.BRIDGE_IPV4)
    assert e.value.code == "ENOENT"
    assert e.value.message == ("cannot set /proc/sys/net/ipv4/conf/vnet-nosuch0/arp_ignore to 1: "
                               "No such file or directory")
