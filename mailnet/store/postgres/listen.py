"""
Cross-node change notifications: PostgreSQL LISTEN/NOTIFY.

Every transaction that writes an account's change journal also sends
``NOTIFY mailnet_changes, '<account id> <application_name>'`` (journal.py);
PostgreSQL delivers it to every listening connection when the transaction
commits.  Each store listens on one connection of its own, in a thread of
its own (outside the query pool), and hands each notification to the
reactor: the account's open folders refresh (their listeners, so IMAP IDLE,
hear of the change) and its account listeners (JMAP push) are told.  A
store ignores its own notifications (its process told its listeners
already): ``application_name`` is ``mailnet-<random>`` per store.

The same connection listens on ``mailnet_documents`` too: a change to a
user's shared JMAP document (userdata.py: ``'<name> <application_name>
<username>'``), handed to the store's document watchers.

Notifications sent while the listening connection is down are lost, so
after a reconnect every open folder refreshes from the modseq it knows
(:meth:`PostgresStore.resync`): nothing is missed, only late.
"""

from __future__ import annotations

import threading
import time

from twisted.logger import Logger

log = Logger()

CHANNEL = "mailnet_changes"
DOCUMENTS = "mailnet_documents"


class Listener:
    """The listening thread of one store."""

    def __init__(self, db, reactor, onChange, onResync, poll=1.0, backoff=2.0, onDocument=None):
        self.db = db
        self.reactor = reactor
        self.onChange = onChange  # (accountId) on the reactor
        self.onDocument = onDocument  # (name, username) on the reactor
        self.onResync = onResync  # () on the reactor, after a reconnect
        self.poll = poll
        self.backoff = backoff
        self.stopping = threading.Event()
        self.ready = threading.Event()  # set once LISTEN is in place (tests wait for it)
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self._run, name="mailnet-postgres-listen", daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(self.poll + 5)

    def _run(self):
        import psycopg

        me = self.db.applicationName
        lost = False
        while not self.stopping.is_set():
            try:
                args = self.db.settings.connectArgs()
                args["application_name"] = me + "-listen"
                with psycopg.connect(**args) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {DOCUMENTS}")
                    if lost:
                        log.info("postgres: change notifications listening again; open folders resync")
                        self.reactor.callFromThread(self.onResync)
                    lost = False
                    self.ready.set()
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=self.poll):
                            if note.channel == DOCUMENTS:
                                name, sender, username = (note.payload.split(" ", 2) + ["", ""])[:3]
                                if sender != me and username and self.onDocument is not None:
                                    self.reactor.callFromThread(self.onDocument, name, username)
                                continue
                            aid, _, sender = note.payload.partition(" ")
                            if sender != me and aid.isdigit():
                                self.reactor.callFromThread(self.onChange, int(aid))
            except (psycopg.Error, OSError) as e:
                self.ready.clear()
                if not lost:
                    log.warn("postgres: change notifications lost ({e}); retrying", e=type(e).__name__)
                lost = True
                self.stopping.wait(self.backoff)
            except Exception:
                log.failure("postgres: change notification listener failed; retrying")
                lost = True
                time.sleep(self.backoff)
