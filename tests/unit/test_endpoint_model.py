"""`(endpoint ...)`: the syntax, and errors that name the field and the fault."""
from __future__ import annotations

import pytest

import sxp
from vnet.errors import VnetError
from vnet.model.endpoint import EndpointError, EndpointSpec


@pytest.mark.parametrize("text, kind, local, remote", [
    ("(endpoint udp 127.0.0.1:5000 127.0.0.1:5001)", "udp", ("127.0.0.1", 5000), ("127.0.0.1", 5001)),
    ("(endpoint udp 0.0.0.0:5000 192.0.2.7:65535)", "udp", ("0.0.0.0", 5000), ("192.0.2.7", 65535)),
    ("(endpoint tcp-listen 0.0.0.0:6000)", "tcp-listen", ("0.0.0.0", 6000), None),
    ("(endpoint tcp-connect 10.1.2.3:1)", "tcp-connect", None, ("10.1.2.3", 1)),
])
def test_parse_and_write_back(text, kind, local, remote):
    spec = EndpointSpec.from_sxp(sxp.parse(text)[0])
    assert (spec.kind, spec.local, spec.remote) == (kind, local, remote)
    assert sxp.show(spec.to_sxp()) == text
    assert EndpointSpec.from_sxp(spec.to_sxp()) == spec


@pytest.mark.parametrize("words, message", [
    ([], "endpoint has no kind"),
    (["tcp"], "endpoint kind 'tcp' is unknown: expected one of udp, tcp-listen, tcp-connect"),
    (["mcast", "239.1.2.3:5000"], "multicast is not supported"),
    (["udp", "127.0.0.1:5000"], "endpoint udp takes 2 addresses (LOCAL REMOTE), got 1"),
    (["tcp-listen", "1.2.3.4:5", "1.2.3.4:6"], "endpoint tcp-listen takes 1 address (ADDR), got 2"),
    (["tcp-listen", "127.0.0.1"], "endpoint tcp-listen: ADDR '127.0.0.1' is not ADDR:PORT"),
    (["tcp-listen", ":5000"], "ADDR ':5000' is not ADDR:PORT"),
    (["udp", "127.0.0.1:0", "127.0.0.1:5"], "endpoint udp: LOCAL '127.0.0.1:0': port 0 is out of range 1..65535"),
    (["udp", "127.0.0.1:5", "127.0.0.1:65536"], "REMOTE '127.0.0.1:65536': port 65536 is out of range 1..65535"),
    (["tcp-connect", "127.0.0.1:http"], "port 'http' is not a number"),
    (["tcp-connect", "127.0.0.300:5"], "endpoint tcp-connect: ADDR '127.0.0.300:5': invalid IPv4 address"),
    (["tcp-connect", "vm1.example:5"], "invalid IPv4 address 'vm1.example'"),
    (["tcp-connect", "0.0.0.0:5"], "0.0.0.0 is no one's address"),
    (["udp", "0.0.0.0:5", "255.255.255.255:5"], "a broadcast address is not one VM"),
    (["udp", "0.0.0.0:5", "239.1.1.1:5"], "REMOTE '239.1.1.1:5': multicast endpoints are not supported"),
    (["tcp-listen", "224.0.0.1:5"], "cannot bind a multicast address"),
    (["udp", "127.0.0.1:5000", "127.0.0.1:5000"], "LOCAL and REMOTE are the same socket"),
    (["tcp-listen", ["x"]], "ADDR must be a word ADDR:PORT, not a list"),
])
def test_errors_name_the_field(words, message):
    with pytest.raises(EndpointError) as e:
        EndpointSpec.parse(words)
    assert message in str(e.value)
    assert isinstance(e.value, VnetError)


def test_a_spec_must_have_the_addresses_of_its_kind():
    with pytest.raises(EndpointError, match=r"written \(endpoint tcp-connect ADDR:PORT\)"):
        EndpointSpec("tcp-connect", local=("1.2.3.4", 5))


def test_clashes():
    def spec(*words):
        return EndpointSpec.parse(list(words))

    a = spec("udp", "127.0.0.1:5000", "127.0.0.1:6000")
    assert a.clashes(spec("udp", "0.0.0.0:5000", "127.0.0.1:6001"))
    assert not a.clashes(spec("udp", "127.0.0.2:5000", "127.0.0.1:6000"))
    assert not a.clashes(spec("tcp-listen", "127.0.0.1:5000"))  # another protocol
    assert not a.clashes(spec("tcp-connect", "127.0.0.1:5000"))  # binds nothing
    assert spec("tcp-listen", "0.0.0.0:7").clashes(spec("tcp-listen", "10.0.0.1:7"))
