"""The ledger: what was queued, pushed and finished, and how much quota is used.

``open_ledger`` picks the backend from the settings. Each backend module is
imported only when chosen, so the CLI starts without loading pymongo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdn_preheat.config import require_secret
from cdn_preheat.ledger.base import Ledger

if TYPE_CHECKING:
    from cdn_preheat.config import Settings

__all__ = ["Ledger", "open_ledger"]


def open_ledger(settings: Settings, *, retries: int = 3, read_only: bool = False) -> Ledger:
    """MongoDB when configured (``MONGODB_URI``), else the SQLite file ``CDN_PREHEAT_DB``.

    ``retries``: further attempts of a MongoDB operation whose server is unreachable
    (``health`` makes none, so it answers within the connect timeout).
    ``read_only``: for commands that only look; they take no write lock and write
    nothing (no schema, no indexes), so they answer while a worker writes.
    """
    if settings.store_kind == "mongodb":
        from cdn_preheat.ledger.mongo import MongoLedger

        return MongoLedger.from_uri(
            require_secret(settings.mongodb_uri, "MONGODB_URI"),
            timeout=settings.cdn_preheat_mongo_connect_timeout,
            socket_timeout=settings.cdn_preheat_mongo_socket_timeout,
            retries=retries,
            read_only=read_only,
        )
    from cdn_preheat.ledger.sqlite import SqliteLedger

    return SqliteLedger(
        settings.cdn_preheat_db,
        busy_timeout=settings.cdn_preheat_lock_timeout,
        read_only=read_only,
    )
