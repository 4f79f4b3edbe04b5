"""Batched route adds (wirelab.net.netns.add_routes) send exactly the
RTM_NEWROUTE requests that IPRoute.route("add", ...) sends, one by one."""

import pytest
from pyroute2 import IPBatch

from wirelab.net.netns import encode_route_add
from wirelab.net.nodes import _route_spec

CASES = [
    (("10.1.0.0/16", "10.0.0.2"), 4),
    (("default", "10.0.0.1"), 4),
    (("10.9.0.0/24", None, "r1-eth0"), 4),
    (("10.9.1.0/24", "10.0.0.2", "r1-eth1"), 4),
    (("fd77:1:a00:200::/55", "fd77:1:a00:100::2"), 6),
    (("default", "fd77:1:a00:100::1"), 6),
    (("fd77:5::/32", None, "r1-eth0"), 6),
]
OIF = {"r1-eth0": 7, "r1-eth1": 8}


def _keywords(route, family):
    spec = _route_spec(route, family=family)
    if "dev" in spec:
        spec["oif"] = OIF[spec.pop("dev")]
    return spec


def _strip_pid(data):
    # bytes 12..16 of the header: the sender's port id, filled in by IPBatch only
    return data[:12] + b"\0" * 4 + data[16:]


@pytest.mark.parametrize("route,family", CASES)
def test_encoded_route_equals_iproute_request(route, family):
    spec = _keywords(route, family)
    batch = IPBatch()
    batch.route("add", **spec)
    expected = bytes(batch.batch)
    got = encode_route_add(spec, seq=0)
    assert _strip_pid(got) == _strip_pid(expected), (route, got.hex(), expected.hex())


def test_sequence_number_is_set():
    spec = _keywords(CASES[0][0], 4)
    data = encode_route_add(spec, seq=4242)
    assert int.from_bytes(data[8:12], "little") == 4242
