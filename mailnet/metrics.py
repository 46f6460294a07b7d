"""
The server's metrics (issue 17), in one place.

Every metric object lives on a :class:`Metrics`, one per server
(``MailContext.metrics``) with its own ``prometheus_client``
``CollectorRegistry`` (not the library's global default), so that tests and
embedded services never share counters.  The code that counts only calls
``metrics.x.inc()`` or ``metrics.x.labels(...).inc()``; the points that count
are shared ones (the listeners' factory, the login sequence, SMTP's delivery,
the local delivery, the queue, the TLS context), not every protocol.

Names are ``mailnet_<subsystem>_...``; labels take few values (a listener,
a protocol, an outcome, a reason class, a TLS version, a JMAP method the
server knows) so that the number of series stays small.  docs/operations.md
lists them with example alert rules.

:func:`render` is what the ``metrics`` listener serves: it only reads numbers
already in memory (plus the queue's in-memory items), so it runs on the
reactor thread in well under a millisecond for registries of this size.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

# RFC 3463 s3: the subject of an enhanced status code (the "y" of x.y.z).
REASON_CLASSES = {
    "0": "other", "1": "addressing", "2": "mailbox", "3": "system", "4": "network",
    "5": "protocol", "6": "content", "7": "policy",
}

SIZE_BUCKETS = (1_000, 4_000, 16_000, 64_000, 256_000, 1_000_000, 4_000_000, 16_000_000, 64_000_000)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def reasonClass(code: int, enhanced: str | None) -> str:
    """``"temporary"``/``"permanent"`` plus the RFC 3463 subject, e.g. ``permanent_policy``."""
    kind = "temporary" if 400 <= code < 500 else "permanent"
    parts = (enhanced or "").split(".")
    subject = REASON_CLASSES.get(parts[1], "other") if len(parts) == 3 else "other"
    return f"{kind}_{subject}"


class Metrics:
    """
    The metric objects of one server.

    @ivar registry: its own ``CollectorRegistry``.
    """

    def __init__(self):
        self.registry = r = CollectorRegistry(auto_describe=True)
        # Listeners (mailnet.net.LimitedFactory)
        self.connectionsOpened = Counter("mailnet_connections_opened", "Connections accepted, per listener.",
                                         ["listener"], registry=r)
        self.connectionsRefused = Counter("mailnet_connections_refused", "Connections refused for the "
                                          "[limits] connections or connections_per_ip limit, per listener.",
                                          ["listener"], registry=r)
        self.sessionsOpen = Gauge("mailnet_sessions_open", "Connections open now, per listener.",
                                  ["listener"], registry=r)
        # Logins (mailnet.login.LoginSequence)
        self.authAttempts = Counter("mailnet_auth_attempts", "Logins, per protocol and outcome (success, "
                                    "failure: a wrong password, or refused like one).",
                                    ["protocol", "outcome"], registry=r)
        # SMTP (mailnet.smtp.delivery)
        self.messagesAccepted = Counter("mailnet_smtp_messages_accepted", "Messages answered 250 at the end of "
                                        "DATA/BDAT, per origin (submission: logged in; mx: not).",
                                        ["origin"], registry=r)
        self.messagesRejected = Counter("mailnet_smtp_messages_rejected", "Messages refused at the end of DATA/BDAT, "
                                        "per reason class (temporary|permanent _ RFC 3463 subject).",
                                        ["reason"], registry=r)
        self.messageSize = Histogram("mailnet_smtp_message_size_bytes", "Size of the messages accepted.",
                                     buckets=SIZE_BUCKETS, registry=r)
        # Store (mailnet.localdelivery)
        self.storeLatency = Histogram("mailnet_store_delivery_seconds", "Seconds the store takes to make a local "
                                      "delivery durable, from the end of the message (per source: smtp, queue).", ["source"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.storeErrors = Counter("mailnet_store_errors", "Local deliveries the store failed, per source.",
                                   ["source"], registry=r)
        # Queue (mailnet.queue)
        self.queueAttempts = Counter("mailnet_queue_delivery_attempts", "Outcomes of delivery attempts, per "
                                     "recipient (sent, deferred, bounced).", ["outcome"], registry=r)
        self.dsnsSent = Counter("mailnet_queue_dsns_sent", "Delivery status notifications queued, per kind "
                                "(failure, delay, success).", ["kind"], registry=r)
        # TLS (mailnet.tls)
        self.tlsHandshakes = Counter("mailnet_tls_handshakes", "Completed server TLS handshakes, per version.",
                                     ["version"], registry=r)
        # JMAP (mailnet.jmap.dispatch)
        self.jmapCalls = Counter("mailnet_jmap_method_calls", "JMAP method calls, per method (\"unknown\" for "
                                 "names the server does not have).", ["method"], registry=r)
        # SMTP replies that refuse (mailnet.smtp.server: every 4xx/5xx of a
        # session, RCPT's unknown user, relay denied and full mailbox included).
        self.smtpRefusals = Counter("mailnet_smtp_refusals", "SMTP replies 4xx/5xx sent in sessions (any command), "
                                    "per reason class (temporary|permanent _ RFC 3463 subject).",
                                    ["reason"], registry=r)
        # Quota (mailnet.localdelivery, mailnet.smtp)
        self.quotaWarnings = Counter("mailnet_quota_warnings", "Quota warning messages delivered to users.",
                                     registry=r)
        self._queue = _QueueCollector()
        r.register(self._queue)
        self._imap = _IdleCollector()
        r.register(self._imap)

    def watchImap(self, shared):
        """Count ``shared``'s IMAP sessions in IDLE at scrape time (a :class:`~mailnet.imap.shared.Shared`)."""
        self._imap.shared = shared

    def smtpRefusal(self, code: int, enhanced: str | None):
        self.smtpRefusals.labels(reason=reasonClass(code, enhanced)).inc()

    def watchQueue(self, runner):
        """Report ``runner``'s items (a :class:`~mailnet.queue.scheduler.QueueRunner`) from now on."""
        self._queue.runner = runner

    def tlsHandshake(self, version: str):
        self.tlsHandshakes.labels(version=version or "unknown").inc()

    def jmapCall(self, name: str, known: bool):
        self.jmapCalls.labels(method=name if known else "unknown").inc()

    def render(self, accept: str | None = None):
        """(body bytes, content type) of a scrape; OpenMetrics when ``accept`` asks for it."""
        encoder, contentType = choose_encoder(accept or "")
        return encoder(self.registry), contentType


class _IdleCollector:
    """IMAP sessions in IDLE now (RFC 2177), read at scrape time."""

    def __init__(self):
        self.shared = None

    def describe(self):
        return [GaugeMetricFamily("mailnet_imap_idle_sessions", "IMAP sessions in IDLE now.")]

    def collect(self):
        shared = self.shared
        n = 0 if shared is None else sum(1 for s in list(shared.sessions) if getattr(s, "idling", False))
        yield GaugeMetricFamily("mailnet_imap_idle_sessions", "IMAP sessions in IDLE now.", value=n)


class _QueueCollector:
    """Queue size by state and the oldest item's age, read at scrape time."""

    def __init__(self):
        self.runner = None

    def describe(self):
        return [GaugeMetricFamily("mailnet_queue_items", "Queue items, per state (active: being delivered; "
                                  "deferred: waiting for a retry; held: held by the operator).",
                                  labels=["state"]),
                GaugeMetricFamily("mailnet_queue_oldest_age_seconds", "Age of the oldest queue item.")]

    def collect(self):
        counts = dict.fromkeys(("active", "deferred", "held"), 0)
        oldest = None
        runner = self.runner
        if runner is not None:
            for item in list(runner.items.values()):
                counts[itemState(item)] += 1
                arrival = getattr(item.envelope, "arrival", None)
                if arrival is not None and (oldest is None or arrival < oldest):
                    oldest = arrival
        items = GaugeMetricFamily("mailnet_queue_items", "Queue items, per state (active: being delivered; "
                                  "deferred: waiting for a retry; held: held by the operator).",
                                  labels=["state"])
        for state, n in counts.items():
            items.add_metric([state], n)
        yield items
        age = 0.0 if oldest is None else max(0.0, runner.clock.seconds() - oldest)
        yield GaugeMetricFamily("mailnet_queue_oldest_age_seconds", "Age of the oldest queue item.", value=age)


def itemState(item) -> str:
    if item.held:
        return "held"
    if item.inflight or item.jobs:
        return "active"
    return "deferred"


class Timer:
    """``Timer(histogram)`` ... ``timer.done()``: observe the seconds in between."""

    __slots__ = ("histogram", "start")

    def __init__(self, histogram):
        self.histogram = histogram
        self.start = time.monotonic()

    def done(self):
        self.histogram.observe(time.monotonic() - self.start)


# Where nothing was wired (a class used on its own, in tests or embedded):
# counted here and never shown.
DISCARD = Metrics()
