"""Ledger backends for the contract suite.

Every test that takes ``ledger`` runs against SQLite (a file in tmp_path),
mongomock, and a real MongoDB when ``MONGODB_URI`` is set (in a throwaway
database dropped afterwards).
"""

from __future__ import annotations

import functools
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mongomock
import mongomock.collection
import pytest

from cdn_preheat.ledger.base import Ledger
from cdn_preheat.ledger.mongo import MongoLedger
from cdn_preheat.ledger.sqlite import SqliteLedger

# A real server only when one is configured, so a plain run skips nothing.
BACKENDS = ["sqlite", "mongomock"] + (["mongodb"] if os.environ.get("MONGODB_URI") else [])


@pytest.fixture(scope="session", autouse=True)
def mongomock_accepts_sort() -> Iterator[None]:
    """mongomock 4.3 predates pymongo 4.11, whose UpdateOne passes ``sort`` to the
    bulk builder (mongomock issue #912). We never sort updates, so drop it."""
    builder = mongomock.collection.BulkOperationBuilder
    original = builder.add_update

    @functools.wraps(original)
    def add_update(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        assert sort is None
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builder, "add_update", add_update)
        yield


@pytest.fixture(autouse=True)
def mongomock_atomic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make mongomock's writes atomic, as a MongoDB server's are (every ledger test).

    Every test here: the scheduler pushes from several threads even in one
    process, so any test that drives it on mongomock needs this (a pipeline
    test without it once pushed a URL twice in CI).

    mongomock checks a write's filter and applies the update in separate
    steps without a lock (``Collection._update`` iterates matching documents,
    then modifies them), so two threads can both match ``state: pending`` and
    both stamp the same document. A real server applies each document update
    atomically; one lock around each write operation restores that guarantee
    (and more: whole operations serialize), which is what the ledger relies on.
    """
    lock = threading.RLock()

    def locked(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return wrapper

    collection = mongomock.collection.Collection
    for name in ("_update", "_find_and_modify", "_insert", "_delete", "bulk_write"):
        monkeypatch.setattr(collection, name, locked(getattr(collection, name)))


def make_mongo_ledger(kind: str) -> tuple[MongoLedger, Callable[[], None]]:
    if kind == "mongomock":
        client = mongomock.MongoClient()
        return MongoLedger(client), client.close
    uri = os.environ["MONGODB_URI"]
    name = f"cdn_preheat_test_{uuid.uuid4().hex[:12]}"
    ledger = MongoLedger.from_uri(uri, name, timeout=5.0, retries=1, backoff=0.1)

    def drop() -> None:
        ledger.client.drop_database(name)
        ledger.close()

    return ledger, drop


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ledger(backend: str, tmp_path: Path) -> Iterator[Ledger]:
    if backend == "sqlite":
        sqlite = SqliteLedger(tmp_path / "ledger.sqlite3")
        yield sqlite
        sqlite.close()
        return
    mongo, cleanup = make_mongo_ledger(backend)
    yield mongo
    cleanup()


@pytest.fixture
def mongo_ledger() -> Iterator[MongoLedger]:
    """A mongomock ledger, for MongoDB-only behaviour (the old script's records)."""
    ledger, cleanup = make_mongo_ledger("mongomock")
    yield ledger
    cleanup()


class Crash(Exception):
    """A process killed at this point: nothing after it runs, no cleanup either."""


# Where each backend can be killed between the steps of a ledger call. A "before"
# point dies as the inner step is entered, an "after" point once it returned.
# SQLite does each call in one transaction (a kill rolls it back); MongoDB's
# steps are separate writes (see the module docstring of ledger/mongo.py).
CRASH_POINTS: dict[str, dict[str, tuple[str, str]]] = {
    "sqlite": {
        "reserved, not claimed": ("cdn_preheat.ledger.sqlite._claim_pending", "before"),
        "claimed, hold not trimmed": ("cdn_preheat.ledger.sqlite._claim_pending", "after"),
        "held, not submitted": ("cdn_preheat.ledger.sqlite._mark_submitted", "before"),
        "submitted, not settled": ("cdn_preheat.ledger.sqlite._mark_submitted", "after"),
        "held, not released": ("cdn_preheat.ledger.sqlite._release", "before"),
        "released, not settled": ("cdn_preheat.ledger.sqlite._release", "after"),
        "held, not invalidated": ("cdn_preheat.ledger.sqlite._mark_invalid", "before"),
        "invalidated, not settled": ("cdn_preheat.ledger.sqlite._mark_invalid", "after"),
    },
    "mongo": {
        "reserved, not claimed": ("_claim_as", "before"),
        "claimed, hold not trimmed": ("_claim_as", "after"),
        "held, not submitted": ("mark_submitted", "before"),
        "submitted, not settled": ("mark_submitted", "after"),
        "held, not released": ("release", "before"),
        "released, not settled": ("release", "after"),
        "held, not invalidated": ("mark_invalid", "before"),
        "invalidated, not settled": ("mark_invalid", "after"),
    },
}


@pytest.fixture
def crash_at(
    ledger: Ledger, backend: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], type[Exception]]:
    """``crash_at(point)``: the ledger's next call dies at ``point`` (see CRASH_POINTS).

    Returns the exception the dying call raises.
    """

    def arm(point: str) -> type[Exception]:
        target, when = CRASH_POINTS["sqlite" if backend == "sqlite" else "mongo"][point]

        def dying(original: Callable[..., Any]) -> Callable[..., Any]:
            armed = [True]  # once: the recovering instance runs the same code

            def step(*args: Any, **kwargs: Any) -> Any:
                if not armed:
                    return original(*args, **kwargs)
                armed.clear()
                if when == "after":
                    original(*args, **kwargs)
                raise Crash(point)

            return step

        if backend == "sqlite":
            module, _, name = target.rpartition(".")
            monkeypatch.setattr(
                f"{module}.{name}", dying(getattr(__import__(module, fromlist=[name]), name))
            )
        else:
            monkeypatch.setattr(ledger, target, dying(getattr(ledger, target)))
        return Crash

    return arm


@pytest.fixture
def reopen(ledger: Ledger, tmp_path: Path) -> Iterator[Callable[[], Ledger]]:
    """Another ledger instance on the same store: the process that recovers."""
    opened: list[Ledger] = []

    def another() -> Ledger:
        other: Ledger
        if isinstance(ledger, SqliteLedger):
            other = SqliteLedger(tmp_path / "ledger.sqlite3")
            opened.append(other)
        else:
            assert isinstance(ledger, MongoLedger)
            other = MongoLedger(ledger.client, ledger.db.name)
        return other

    yield another
    for other in opened:
        other.close()
