"""
A user's small JMAP documents shared by every node on the database (schema
version 9, ``user_documents``): an
:class:`~mailnet.jmap.identity.IUserData` whose rows are keyed by
``(username, name)`` (the username lowercased, as the file backend's
account ids are), the document as ``jsonb``.  The wiring
(mailnet/service.py) gives it the documents every node must see alike:
``identities`` (Identity's fields), ``webmail`` (the app's settings) and
``pushsubscriptions`` (RFC 8620 s7.2, docs/scaling.md).

Each update also sends ``NOTIFY mailnet_documents, '<name>
<application_name> <username>'`` in its transaction: the other nodes'
listeners (listen.py) hear of it at the commit, and :meth:`watch` tells the
node's watchers of a document (the push sender reads the user's
subscriptions again).

``update`` is one transaction in the store's worker thread: the row is
made if missing, then read ``FOR UPDATE`` (another node's update of the
same document waits for this commit), ``change(old)`` runs there, and the
new document is written; the result fires after the commit.  ``change``
runs in the worker thread and may run again when the transaction is
retried (a deadlock, a serialization failure), so it must be a pure
function of ``old``, as the JMAP data types' are.  A database outage is
:class:`~mailnet.store.interfaces.TemporaryStoreError`.
"""

from __future__ import annotations

from zope.interface import implementer

from mailnet.jmap.identity import IUserData

NAMES = frozenset({"identities", "pushsubscriptions", "webmail"})


def _check(name):
    if name not in NAMES:
        raise ValueError("unknown document")


def _load(conn, username, name):
    row = conn.execute("SELECT doc FROM user_documents WHERE username = %s AND name = %s",
                       (username, name)).fetchone()
    return row[0] if row is not None else None


def _loadAll(conn, name):
    return [(doc.get("username"), doc) for (doc,) in conn.execute(
        "SELECT doc FROM user_documents WHERE name = %s ORDER BY username", (name,))
        if isinstance(doc, dict) and isinstance(doc.get("username"), str)]


def _update(conn, username, name, change):
    from psycopg.types.json import Jsonb

    # The row exists (a first update makes it, as JSON null), then is locked:
    # two nodes' updates of one document run one after the other.
    conn.execute("INSERT INTO user_documents (username, name, doc) VALUES (%s, %s, 'null'::jsonb)"
                 " ON CONFLICT (username, name) DO NOTHING", (username, name))
    row = conn.execute("SELECT doc FROM user_documents WHERE username = %s AND name = %s FOR UPDATE",
                       (username, name)).fetchone()
    new = change(row[0])
    conn.execute("UPDATE user_documents SET doc = %s WHERE username = %s AND name = %s",
                 (Jsonb(new), username, name))
    # The other nodes hear of it at the commit (listen.py); the sender is named so it can skip its own.
    conn.execute("SELECT pg_notify('mailnet_documents', %s || ' ' || current_setting('application_name') || ' ' || %s)",
                 (name, username))
    return new


@implementer(IUserData)
class PostgresUserData:
    """The documents :data:`NAMES` in ``user_documents`` (see the module docstring)."""

    def __init__(self, db, store=None):
        self.db = db
        self.store = store  # its listener tells of other nodes' updates (watch)

    def watch(self, name, callback):
        """
        ``callback(username)`` on the reactor when another node changed the
        user's document ``name``; ``callback(None)`` when such notifications
        may have been lost (the listening connection came back): every
        user's may have changed.
        """
        _check(name)
        if self.store is None:
            return

        def told(changedName, username):
            if changedName is None or changedName == name:
                callback(username)

        self.store.watchDocuments(told)

    def load(self, username, name):
        _check(name)
        return self.db.run(_load, username.lower(), name)

    def loadAll(self, name):
        _check(name)
        return self.db.run(_loadAll, name)

    def update(self, username, name, change):
        _check(name)
        return self.db.run(_update, username.lower(), name, change)
