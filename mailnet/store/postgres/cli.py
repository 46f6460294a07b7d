"""
``mailnet db init|upgrade|status``: the PostgreSQL store's schema
(mailnet/store/postgres/schema.py), with the ``[postgres]`` settings of
the config; ``mailnet db recount``: every account's quota counter from its
messages (mailnet/store/postgres/quota.py).  One line of output; exit status 1 when the database cannot be
reached or the schema does not match.
"""

from __future__ import annotations

import sys

from mailnet.store.postgres import quota, schema
from mailnet.store.postgres.db import Settings, _describe


def _objects(conf):
    """The object store bodies may be in (``[postgres] bodies = "s3"``), for a migration that reads bodies; or None."""
    if conf.postgres.bodies != "s3":
        return None
    try:
        from mailnet.store.postgres import objects

        return objects.fromConfig(conf)
    except (ImportError, OSError) as e:
        print(f"mailnet: the object store cannot be used ({type(e).__name__}); bodies there are "
              "summarised for the message list when first listed", file=sys.stderr)
        return None


def main(conf, action, out=sys.stdout, dryRun=False, grace=None):
    import psycopg

    if action == "gc":
        return _gc(conf, out, dryRun, conf.postgres.gc_grace if grace is None else grace)

    settings = Settings.fromConfig(conf)
    try:
        kw = settings.connectArgs()
    except OSError as e:
        print(f"mailnet: [postgres] password_file: {e.strerror}", file=sys.stderr)
        return 1
    try:
        with psycopg.connect(**kw) as conn:
            conn.autocommit = True  # the migrations one transaction, each batch of a fill one of its own
            if action == "status":
                version = schema.currentVersion(conn)
                state = ("up to date" if version == schema.VERSION else
                         "no mailnet schema: run `mailnet db init`" if version == 0 else
                         "older than this mailnet: run `mailnet db upgrade`" if version < schema.VERSION else
                         "newer than this mailnet")
                print(f"schema version {version}, this mailnet {schema.VERSION}: {state}", file=out)
                return 0 if version == schema.VERSION else 1
            if action == "recount":
                schema.checkVersion(conn)
                with conn.transaction():
                    n = quota.recountAll(conn)
                print(f"quota usage recounted for {n} account(s)", file=out)
                return 0
            before = schema.currentVersion(conn)
            if action == "init" and before != 0:
                print(f"mailnet: the database has a mailnet schema already (version {before}); "
                      "`mailnet db upgrade` brings it up to date", file=sys.stderr)
                return 1
            if action == "upgrade" and before == 0:
                print("mailnet: the database has no mailnet schema: run `mailnet db init`", file=sys.stderr)
                return 1
            notes = []
            before, after = schema.upgrade(conn, _objects(conf) if before else None, notes)
            for line in notes:
                print(line, file=out)
            print(f"schema version {before} -> {after}" if before != after else f"schema version {after}: up to date",
                  file=out)
            return 0
    except schema.SchemaError as e:
        print(f"mailnet: {e}", file=sys.stderr)
        return 1
    except psycopg.Error as e:
        print(f"mailnet: the database cannot be used: {_describe(e)}", file=sys.stderr)
        return 1


def _gc(conf, out, dryRun, grace):
    from mailnet.config import ConfigError
    from mailnet.store.interfaces import TemporaryStoreError
    from mailnet.store.postgres import gc
    from mailnet.store.postgres.db import openChecked

    if grace < 0:
        print("mailnet: --grace: a number of seconds, 0 or more", file=sys.stderr)
        return 2
    objects = None
    try:
        if conf.postgres.bodies == "s3":
            from mailnet.store.postgres import objects as s3

            objects = s3.fromConfig(conf)
            objects.check()
        db = openChecked(conf, objects=objects)
    except ImportError:
        print('mailnet: [postgres] bodies = "s3" needs boto3 (pip install mailnet[s3])', file=sys.stderr)
        return 1
    except ConfigError as e:
        print(f"mailnet: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"mailnet: [postgres] s3_secret_file: {e.strerror}", file=sys.stderr)
        return 1
    except TemporaryStoreError:
        print("mailnet: [postgres] the object store cannot be reached or has no bucket "
              f"{conf.postgres.s3_bucket!r}", file=sys.stderr)
        return 1
    try:
        report = gc.sweep(db, objects, grace, dryRun=dryRun)
    except TemporaryStoreError as e:
        print(f"mailnet: {e}", file=sys.stderr)
        return 1
    finally:
        db.close()
    if report is None:
        print("mailnet: a sweep is running already (on this or another node); try again later", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line, file=out)
    return 0
