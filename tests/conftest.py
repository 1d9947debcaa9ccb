"""Suite-wide: the tests marked ``slow`` are handed out first.

With ``-n 2`` pytest-xdist hands tests to the workers in collection order, so a
long test collected late (tests/test_container.py's replay of the Dockerfile's
pip steps takes ~100 s) runs alone at the end while the other worker has
nothing left. Moving the ``slow`` ones to the front (their order, and that of
the rest, kept) leaves short tests for the tail.
"""

from __future__ import annotations

import pytest

from cdn_preheat.sandbox.core import RateCounting


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def rate_counting() -> RateCounting:
    """How a test's sandbox counts every API's rate (``Sandbox(rate_counting=)``).

    The sliding second, unless a test parametrizes it over ``RATE_COUNTINGS``: no
    vendor document settles how "N requests a second" is counted, so the tests
    that assert no call was refused for rate run on every plausible way.
    """
    return "sliding"
