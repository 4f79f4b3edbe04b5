"""Fixtures shared by the integration tests (root)."""

import pytest

from tiny_topo import RouterPair
from wirelab.net.testbed import Testbed


@pytest.fixture(scope="module")
def tb():
    """One RouterPair network (h1 -- r1 -- h2) shared by a module's tests."""
    with Testbed(RouterPair()) as testbed:
        yield testbed


@pytest.fixture
def fresh_tb():
    """A RouterPair network of the test's own."""
    with Testbed(RouterPair()) as testbed:
        yield testbed
