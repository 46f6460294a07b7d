"""
The PostgreSQL schema, versioned in code: :data:`MIGRATIONS` is a list of
SQL scripts, the N-th bringing a database from version N-1 to N.
``mailnet db init`` makes the tables (every migration in order), ``mailnet
db upgrade`` runs the ones a database lacks, ``mailnet db status`` says
where it stands.  A server refuses to start on a database whose version is
older (or newer) than the code's (:func:`checkVersion`, one line).

Tables (version 1; docs/store.md "The PostgreSQL backend"):

* ``accounts``: one row per user (``username`` as the directory gives it).
* ``folders``: one row per folder: name, ``mailbox_id`` (never reused: a
  sequence), ``uidvalidity`` (a sequence that starts at the epoch second the
  schema was made: strictly increasing across every node), ``uidnext`` and
  ``highestmodseq`` (bumped in the transaction that adds or changes
  messages: ``UPDATE ... RETURNING`` under the row lock, so no two writers,
  in one process or on two nodes, ever hand out the same UID),
  ``first_recent`` (\\Recent), ``subscribed``.
* ``subscriptions``: names subscribed, existing or not (RFC 3501 s6.3.9).
* ``messages``: (folder, uid) -> ``email_id`` (a sequence; kept across a
  MOVE), flags (text[], system flags and keywords), internal date, size,
  modseq, ``body_hash``.
* ``expunged``: (folder, uid, modseq) of removed messages (QRESYNC
  VANISHED, and other processes' refresh).
* ``bodies`` + ``body_chunks``: the message bytes, content-addressed by
  SHA-256, in chunks of :data:`CHUNK` bytes, so that neither a delivery nor a
  FETCH ever holds a whole body in the client's memory, and a COPY (or one
  delivery to many recipients) stores no second body.  A body goes in the
  transaction that removes its last message.
* ``notify_log``: reserved for the cross-node change feed (LISTEN/NOTIFY;
  see docs/scaling.md), unused yet.

Version 2 adds the account change journal: ``change_meta`` and ``changes``
(mailnet/store/postgres/journal.py); version 3 the thread index:
``thread_emails``, ``thread_refs``, ``thread_merges``
(mailnet/store/postgres/threadindex.py); version 4 the quota counters:
``quota_usage`` (mailnet/store/postgres/quota.py); version 5 the shared
outbound queue: ``queue_items``, ``queue_chunks``, ``queue_commands``
(mailnet/queue/pgspool.py); version 6 the
cluster-wide state: ``login_failures`` (throttle.py), ``users``,
``aliases`` and ``directory_serial`` (directory.py), ``migrated``
(migrate.py); version 7 the message list index: ``body_summaries`` and
the indexes ``messages_received``, ``messages_folder_received``
(mailnet/store/postgres/listindex.py), filled from the stored bodies by
the upgrade (:data:`FILLS`, after the migration commits); version 8
``tokens``, the app passwords of the users table (directory.py); version 9
``user_documents``, a user's JMAP documents (userdata.py); version 10
the JMAP uploads: ``uploads`` and ``upload_chunks`` (uploads.py); version
11 ``webmail_sessions``, the webmail's cookie sessions (sessions.py).
"""

from __future__ import annotations

CHUNK = 256 * 1024

MIGRATIONS = [
    # 1: the store.
    """
    CREATE TABLE mailnet_schema (version integer NOT NULL);
    INSERT INTO mailnet_schema VALUES (0);
    CREATE SEQUENCE mailbox_ids;
    CREATE SEQUENCE email_ids;
    CREATE SEQUENCE uidvalidities;
    SELECT setval('uidvalidities', GREATEST(1, extract(epoch FROM now())::bigint));
    CREATE TABLE accounts (
        id bigserial PRIMARY KEY,
        username text NOT NULL UNIQUE,
        created timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE folders (
        id bigserial PRIMARY KEY,
        account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name text NOT NULL,
        mailbox_id text NOT NULL UNIQUE,
        uidvalidity bigint NOT NULL,
        uidnext bigint NOT NULL DEFAULT 1,
        highestmodseq bigint NOT NULL DEFAULT 1,
        first_recent bigint NOT NULL DEFAULT 1,
        UNIQUE (account, name)
    );
    CREATE TABLE subscriptions (
        account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name text NOT NULL,
        PRIMARY KEY (account, name)
    );
    CREATE TABLE bodies (
        hash bytea PRIMARY KEY,
        size bigint NOT NULL,
        chunks integer NOT NULL
    );
    CREATE TABLE body_chunks (
        hash bytea NOT NULL REFERENCES bodies(hash) ON DELETE CASCADE,
        n integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (hash, n)
    );
    -- Mail hardly compresses further once base64-encoded; stored as is, a
    -- chunk is read without decompressing anything.
    ALTER TABLE body_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
    CREATE TABLE messages (
        folder bigint NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        uid bigint NOT NULL,
        account bigint NOT NULL,
        email_id text NOT NULL,
        flags text[] NOT NULL DEFAULT '{}',
        internal_date double precision NOT NULL,
        size bigint NOT NULL,
        modseq bigint NOT NULL,
        body_hash bytea NOT NULL REFERENCES bodies(hash),
        PRIMARY KEY (folder, uid)
    );
    CREATE INDEX messages_modseq ON messages (folder, modseq);
    CREATE INDEX messages_email ON messages (account, email_id);
    CREATE INDEX messages_body ON messages (body_hash);
    CREATE TABLE expunged (
        folder bigint NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        uid bigint NOT NULL,
        modseq bigint NOT NULL,
        PRIMARY KEY (folder, uid)
    );
    CREATE INDEX expunged_modseq ON expunged (folder, modseq);
    CREATE TABLE notify_log (
        seq bigserial PRIMARY KEY,
        account bigint NOT NULL,
        payload text NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 2: the account change journal (JMAP /changes), written in the
    # transaction of each change (mailnet/store/postgres/journal.py).
    """
    CREATE TABLE change_meta (
        account bigint PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        epoch text NOT NULL,
        last bigint NOT NULL DEFAULT 0,
        floor bigint NOT NULL DEFAULT 0
    );
    INSERT INTO change_meta (account, epoch) SELECT id, substr(md5(random()::text), 1, 8) FROM accounts;
    CREATE TABLE changes (
        account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        seq bigint NOT NULL,
        type smallint NOT NULL,
        id text NOT NULL,
        kind smallint NOT NULL,
        counts boolean NOT NULL DEFAULT false,
        PRIMARY KEY (account, seq)
    );
    CREATE INDEX changes_type ON changes (account, type, seq);
    """,
    # 3: the thread index (mailnet/store/postgres/threadindex.py), shared by
    # every node; the journal's marks in it move from each process to change_meta.
    """
    CREATE TABLE thread_emails (
        account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        seq bigserial NOT NULL,
        email text NOT NULL,
        thread text NOT NULL,
        msgid text,
        subject text NOT NULL,
        reply boolean NOT NULL,
        PRIMARY KEY (account, email)
    );
    CREATE INDEX thread_emails_seq ON thread_emails (account, seq);
    CREATE INDEX thread_emails_thread ON thread_emails (account, thread, seq);
    CREATE INDEX thread_emails_msgid ON thread_emails (account, msgid);
    CREATE INDEX thread_emails_subject ON thread_emails (account, subject, seq);
    CREATE TABLE thread_refs (
        account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        email text NOT NULL,
        ref text NOT NULL
    );
    CREATE INDEX thread_refs_ref ON thread_refs (account, ref);
    CREATE TABLE thread_merges (
        seq bigserial PRIMARY KEY,
        account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        email text NOT NULL,
        absorbed text NOT NULL,
        thread text NOT NULL
    );
    CREATE INDEX thread_merges_account ON thread_merges (account, seq);
    ALTER TABLE change_meta ADD COLUMN thread_seq bigint NOT NULL DEFAULT 0,
                            ADD COLUMN merge_seq bigint NOT NULL DEFAULT 0;
    """,
    # 4: the quota usage (mailnet/store/postgres/quota.py): a counter per
    # account kept by the transactions that add or remove messages, and the
    # warning mark; counted once here from the messages there are.
    """
    CREATE TABLE quota_usage (
        account bigint PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        storage bigint NOT NULL DEFAULT 0,
        messages bigint NOT NULL DEFAULT 0,
        warned boolean NOT NULL DEFAULT false
    );
    INSERT INTO quota_usage (account, storage, messages)
        SELECT a.id, COALESCE(SUM(m.size), 0), COUNT(m.uid) FROM accounts a
        LEFT JOIN messages m ON m.account = a.id GROUP BY a.id;
    """,
    # 5: the outbound queue shared by every node (mailnet/queue/pgspool.py):
    # one row per item (the JSON envelope with its per-recipient state, the
    # earliest due time, the node holding it and its lease), the message in
    # chunks of its own, and the operator's commands for the holding node.
    """
    CREATE TABLE queue_items (
        id text PRIMARY KEY,
        envelope bytea NOT NULL,
        size bigint NOT NULL,
        chunks integer NOT NULL,
        next_try double precision,
        owner text,
        lease_until double precision,
        corrupt text,
        created timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX queue_items_due ON queue_items (next_try) WHERE corrupt IS NULL;
    CREATE INDEX queue_items_owner ON queue_items (owner);
    CREATE TABLE queue_chunks (
        id text NOT NULL REFERENCES queue_items(id) ON DELETE CASCADE,
        n integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (id, n)
    );
    ALTER TABLE queue_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
    CREATE TABLE queue_commands (
        seq bigserial PRIMARY KEY,
        id text NOT NULL REFERENCES queue_items(id) ON DELETE CASCADE,
        command text NOT NULL
    );
    CREATE INDEX queue_commands_id ON queue_commands (id);
    """,
    # 6: cluster-wide state (docs/scaling.md): the login failure throttle
    # (mailnet/store/postgres/throttle.py), users and aliases
    # (mailnet/store/postgres/directory.py, with a serial the nodes poll),
    # and what `mailnet migrate maildir-to-postgres` copied
    # (mailnet/store/postgres/migrate.py).
    """
    CREATE TABLE login_failures (
        kind text NOT NULL,
        key text NOT NULL,
        count integer NOT NULL,
        last double precision NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX login_failures_last ON login_failures (last);
    CREATE TABLE directory_serial (serial bigint NOT NULL);
    INSERT INTO directory_serial VALUES (0);
    CREATE TABLE users (
        username text PRIMARY KEY,
        hash text NOT NULL,
        extra text NOT NULL DEFAULT '',
        changed timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE aliases (
        address text PRIMARY KEY,
        targets text[] NOT NULL
    );
    CREATE TABLE migrated (
        account bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        source text NOT NULL,
        folder bigint NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        uid bigint NOT NULL,
        PRIMARY KEY (account, source)
    );
    """,
    # 7: the message list index (mailnet/store/postgres/listindex.py): the
    # list fields per body, written with the body; the message rows sorted
    # by received date (per account, per folder).  FILLS[7] summarises the
    # bodies stored before.
    """
    CREATE TABLE body_summaries (
        hash bytea PRIMARY KEY REFERENCES bodies(hash) ON DELETE CASCADE,
        fields text NOT NULL
    );
    CREATE INDEX messages_received ON messages (account, internal_date, email_id COLLATE "C");
    CREATE INDEX messages_folder_received ON messages (folder, internal_date, email_id COLLATE "C");
    """,
    # 8: app passwords (`mailnet token`) shared by every node with
    # [auth] directory = "postgres" (mailnet/store/postgres/directory.py):
    # the token's SHA-256 only, never the token; they go with their user.
    """
    CREATE TABLE tokens (
        digest text PRIMARY KEY,
        username text NOT NULL REFERENCES users(username) ON DELETE CASCADE,
        name text NOT NULL,
        created bigint NOT NULL,
        UNIQUE (username, name)
    );
    """,
    # 9: a user's JMAP documents shared by every node (identities, the
    # webmail's settings: mailnet/store/postgres/userdata.py).
    """
    CREATE TABLE user_documents (
        username text NOT NULL,
        name text NOT NULL,
        doc jsonb NOT NULL,
        PRIMARY KEY (username, name)
    );
    """,
    # 10: JMAP uploads (RFC 8620 s6.1) shared by every node
    # (mailnet/store/postgres/uploads.py): one row per (account, blob id),
    # the bytes in chunks of CHUNK bytes; ``created`` in epoch seconds,
    # expired after [http] blob_expiry and swept by any node.
    """
    CREATE TABLE uploads (
        id bigserial PRIMARY KEY,
        account text NOT NULL,
        blob_id text NOT NULL,
        size bigint NOT NULL DEFAULT 0,
        type text NOT NULL DEFAULT 'application/octet-stream',
        created double precision NOT NULL,
        chunks integer NOT NULL DEFAULT 0,
        UNIQUE (account, blob_id)
    );
    CREATE INDEX uploads_created ON uploads (created);
    CREATE TABLE upload_chunks (
        upload bigint NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
        n integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (upload, n)
    );
    ALTER TABLE upload_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
    """,
    # 11: the webmail's cookie sessions shared by every node
    # (mailnet/store/postgres/sessions.py): the SHA-256 of the session id,
    # never the id; times in epoch seconds.
    """
    CREATE TABLE webmail_sessions (
        id_hash bytea PRIMARY KEY,
        username text NOT NULL,
        csrf text NOT NULL,
        created double precision NOT NULL,
        last_seen double precision NOT NULL
    );
    CREATE INDEX webmail_sessions_user ON webmail_sessions (username, created);
    CREATE INDEX webmail_sessions_seen ON webmail_sessions (last_seen);
    """,
]

VERSION = len(MIGRATIONS)


def _fillSummaries(conn, objects):
    from mailnet.store.postgres import listindex

    n, seconds = listindex.fill(conn, objects)
    if not n:
        return None
    return f"message list index: the list fields of {n} bodies made in {seconds:.2f} s"


# Version -> f(conn, objects) -> a line for the operator (None: nothing done): what a migration
# computes in Python, after its SQL (see upgrade()).
FILLS = {7: _fillSummaries}


class SchemaError(Exception):
    """The database's schema does not match the code (one line for the operator)."""


def currentVersion(conn):
    """The schema version of the database (0: no mailnet tables)."""
    row = conn.execute("SELECT to_regclass('mailnet_schema')").fetchone()
    if row[0] is None:
        return 0
    return conn.execute("SELECT version FROM mailnet_schema").fetchone()[0]


def upgrade(conn, objects=None, notes=None):
    """
    Run the migrations the database lacks, all in one transaction (each
    a savepoint of it: a failed migration leaves the database at the
    version it had before this call; an advisory lock keeps two nodes
    from upgrading at once, and the tables a migration alters stay
    locked until the last one has run); then, out
    of those transactions (no lock held while it reads bodies), the
    :data:`FILLS` of every version the database is at or past: each looks
    for what is still missing, in batches of their own transactions, so
    an interrupted or repeated upgrade carries on (``objects``: the object
    store bodies may be in, or None; their lines go to the list
    ``notes``).  Returns ``(before, after)``.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7239001)")
        before = version = currentVersion(conn)
        if version > VERSION:
            raise SchemaError(f"the database schema is version {version}, newer than this mailnet ({VERSION})")
        while version < VERSION:
            with conn.transaction():
                conn.execute(MIGRATIONS[version])
                version += 1
                conn.execute("UPDATE mailnet_schema SET version = %s", (version,))
    for v in sorted(FILLS):
        if v <= version:
            line = FILLS[v](conn, objects)
            if notes is not None and line:
                notes.append(line)
    return before, version


def checkVersion(conn):
    """Raise :class:`SchemaError` unless the database is at :data:`VERSION`."""
    version = currentVersion(conn)
    if version == 0:
        raise SchemaError("the database has no mailnet schema: run `mailnet db init`")
    if version < VERSION:
        raise SchemaError(f"the database schema is version {version}, this mailnet needs {VERSION}: "
                          "run `mailnet db upgrade`")
    if version > VERSION:
        raise SchemaError(f"the database schema is version {version}, newer than this mailnet ({VERSION}): "
                          "upgrade mailnet")
