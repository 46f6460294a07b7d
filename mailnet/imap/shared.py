"""
What the IMAP sessions of one service share: :class:`IMAPSettings` (the
configuration a session needs) and :class:`Shared` (the portal, the login
sequence, caches, the folder keeper, the sessions per user), owned by
:class:`mailnet.imap.server.IMAPService`.
"""

from __future__ import annotations

from mailnet.imap import fetch
from mailnet.imap.sort import SortCache
from mailnet.login import LoginSequence


class IMAPSettings:
    """What a session needs to know of the configuration (from ``[limits]`` / ``[auth]``)."""

    def __init__(self, config=None, **overrides):
        limits = config.limits if config is not None else None
        self.maxLine = limits.imap_line_length if limits else 65536
        self.maxLiteral = limits.imap_literal_size if limits else 35 * 1024 * 1024
        self.messageSize = limits.message_size if limits else 35 * 1024 * 1024
        self.idleTimeout = limits.imap_idle_timeout if limits else 1800
        self.idlePoll = getattr(limits, "imap_idle_poll", 2.0) if limits else 2.0
        self.connectionsPerUser = limits.imap_connections_per_user if limits else 20
        self.authFailures = limits.auth_failures if limits else 5
        # Deadlines that bytes do not extend (slowloris; mailnet.deadline).
        self.commandDeadline = limits.command_deadline if limits else 60
        self.loginDeadline = limits.login_deadline if limits else 180
        self.minDataRate = limits.min_data_rate if limits else 500
        # MIME structure caps (fetch.MAX_PARTS: beyond them a message is shown flatter).
        self.mimeParts = getattr(limits, "mime_parts", fetch.MAX_PARTS) if limits else fetch.MAX_PARTS
        self.mimeDepth = getattr(limits, "mime_depth", fetch.MAX_DEPTH) if limits else fetch.MAX_DEPTH
        # RFC 5267 s4.3.1: live SEARCH/SORT results (RETURN (UPDATE)) one session may keep.
        self.searchContexts = getattr(limits, "imap_search_contexts", 10) if limits else 10
        # NOTIFY (RFC 5465): mailboxes one session may watch, mailbox events that may wait for it.
        self.notifyMailboxes = getattr(limits, "imap_notify_mailboxes", 200) if limits else 200
        self.notifyQueue = getattr(limits, "imap_notify_queue", 1000) if limits else 1000
        self.allowPlaintext = config.auth.allow_plaintext if config is not None else False
        self.hostname = config.server.hostname if config is not None else "localhost"
        # Recently used folders stay open this long (seconds), at most this many.
        self.folderLinger = 300.0
        self.folderKeep = 100
        self.__dict__.update(overrides)


class Shared:
    """
    Server-wide state every session of a factory shares.

    @ivar portal: twisted.cred portal (avatars: the store's IAccount).
    @ivar throttle: :class:`mailnet.login.AuthThrottle`.
    @ivar login: :class:`mailnet.login.LoginSequence` (made from the portal
        and the throttle when not given).
    @ivar tlsAvailable: whether STARTTLS can be offered.
    @ivar clock: the reactor (callLater, seconds).
    """

    def __init__(self, settings, portal, throttle, clock, tlsAvailable=True, inThread=None, login=None):
        from mailnet.imap.mailbox import FolderKeeper, RecentRegistry

        if inThread is None:
            from twisted.internet import threads

            def inThread(f, *args):
                return threads.deferToThreadPool(clock, clock.getThreadPool(), f, *args)

        # inThread(f, *args) -> Deferred: run blocking work (SEARCH reads) off the reactor.
        self.inThread = inThread

        self.settings = settings
        self.portal = portal
        self.throttle = throttle
        self.login = login or LoginSequence(portal, throttle, clock)
        self.clock = clock
        self.tlsAvailable = tlsAvailable
        self.structures = fetch.StructureCache()
        self.sortKeys = SortCache()
        self.recent = RecentRegistry()
        self.userSessions = {}
        self.sessions = set()
        self.keeper = FolderKeeper(clock, settings.folderLinger, settings.folderKeep)
