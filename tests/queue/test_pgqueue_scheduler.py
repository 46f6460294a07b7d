"""
One scheduler, two storages: the runner's own tests (tests/queue/test_scheduler.py:
retry schedule, lifetime, delay warning, RFC 3464 bounces, success reports,
local delivery, operator commands, restart) run again with the queue
shared in PostgreSQL (mailnet/queue/pgspool.py) on the real test server
instead of the spool directory.  task.Clock drives the runner; database
work runs synchronously.
"""

from __future__ import annotations

import pytest

from mailnet.queue.pgspool import PostgresSpool
from mailnet.store.postgres.db import Database
from tests.queue import test_scheduler as base
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase


class PgEnv(base.Env):
    def __init__(self, tmp_path, db, **kw):
        super().__init__(tmp_path, **kw)
        self.spool = PostgresSpool(db, self.config.spoolDir, reactor=self.clock, lease=600, claimInterval=5,
                                   batch=50, node="node-1", runInThread=base.sync)


@pytest.fixture
def make(tmp_path, pgServer, pgDatabase):
    made = []
    db = Database(pgServer.settings(pgDatabase), runner=base.sync)

    def factory(**kw):
        directory = tmp_path / f"e{len(made)}"
        directory.mkdir()
        env = PgEnv(directory, db, **kw)
        made.append(env)
        return env

    yield factory
    for env in made:
        if env.runner is not None and env.runner.running:
            env.runner.stop()
    db.close()


for _name in (
    "test_delivered_and_removed", "test_recipients_grouped_by_destination", "test_several_messages_share_one_connection",
    "test_temporary_failure_is_retried_on_schedule", "test_refused_connection_defers_whole_destination_with_one_attempt",
    "test_lifetime_bounces_with_last_error", "test_delay_warning_once_after_configured_time",
    "test_delay_warning_respects_notify", "test_permanent_failure_one_bounce_per_message",
    "test_no_bounce_for_a_bounce", "test_notify_never_no_bounce", "test_no_such_domain_and_null_mx_bounce",
    "test_mixed_outcomes", "test_success_dsn_relayed_only_when_peer_lacks_dsn", "test_success_dsn_for_local_delivery",
    "test_local_alias_and_unknown_user", "test_alias_to_remote_address_is_expanded", "test_store_failure_is_temporary",
    "test_restart_never_resends_sent_recipients", "test_hold_release_flush_delete", "test_delete_while_in_flight",
    "test_stop_waits_for_running_transaction", "test_local_delivery_through_the_real_memory_store",
):
    globals()[_name] = getattr(base, _name)
