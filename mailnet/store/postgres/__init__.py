"""
The PostgreSQL store backend (``[store] backend = "postgres"``, settings in
``[postgres]``): see docs/store.md "The PostgreSQL backend" and
docs/scaling.md.

* :mod:`.schema`: the tables and their versioned migrations (``mailnet db``).
* :mod:`.db`: connections per worker thread, the thread pool, timeouts, a
  database outage as :class:`~mailnet.store.interfaces.TemporaryStoreError`.
* :mod:`.sql`: the queries; bodies content-addressed and chunked.
* :mod:`.folder`: an open folder's shared snapshot, kept current by deltas.
* :mod:`.listindex`, :mod:`.emaillist`: the message list index in the
  database (list fields per body, written with the body) and its reader.
* :mod:`.account`, :mod:`.store`: IAccount, IMailStore, IDelivery.
"""

from mailnet.store.postgres.store import PostgresDelivery, PostgresStore, makeStore

__all__ = ["PostgresStore", "PostgresDelivery", "makeStore"]
