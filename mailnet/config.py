"""
Configuration: one TOML file, validated against the schema below.

The schema is the single source of truth: defaults, types and the one-line
reason for each option live here, ``etc/mailnet.toml`` is generated from it
(``mailnet config example``) and a test checks the two agree.

Errors are :class:`ConfigError`, whose ``str`` is one line naming the file,
the key and the problem, e.g.::

    etc/mailnet.toml: [limits] message_size: expected an integer, got "big"

With no file, :func:`load` returns the development defaults: everything under
``./var`` of the current directory, listeners on 127.0.0.1 high ports.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import os
import tomllib
import types
from typing import Any

KB = 1024
MB = 1024 * KB


class ConfigError(Exception):
    """A configuration problem; ``str(error)`` is one line for the operator."""


@dataclasses.dataclass(frozen=True)
class Option:
    """
    One config key.

    @ivar kind: one of ``str``, ``int``, ``float``, ``bool``, ``strlist``,
        ``endpoint``, ``path``, ``hostport``, ``choice``, ``table`` (a
        free-form TOML table, checked by whoever reads it).
    @ivar default: the built-in (development) default.
    @ivar doc: one line: what it is and why the default.
    @ivar example: value shown in etc/mailnet.toml when it should differ from
        the development default (production ports, say).
    """

    kind: str
    default: Any
    doc: str
    example: Any = None
    choices: tuple = ()
    minimum: float | None = None


def _o(kind, default, doc, **kw):
    return Option(kind, default, doc, **kw)


LISTEN_DEFAULTS = {
    "smtp": ("tcp:2525:interface=127.0.0.1", "tcp:25", "SMTP for mail to our domains (MX)"),
    "submission": ("tcp:2587:interface=127.0.0.1", "tcp:587", "Submission: STARTTLS, then AUTH"),
    "submissions": ("tcp:2465:interface=127.0.0.1", "tcp:465", "Submission over implicit TLS (RFC 8314)"),
    "pop3": ("tcp:2110:interface=127.0.0.1", "tcp:110", "POP3 with STLS"),
    "pop3s": ("tcp:2995:interface=127.0.0.1", "tcp:995", "POP3 over implicit TLS"),
    "imap": ("tcp:2143:interface=127.0.0.1", "tcp:143", "IMAP with STARTTLS"),
    "imaps": ("tcp:2993:interface=127.0.0.1", "tcp:993", "IMAP over implicit TLS"),
    "http": ("tcp:8080:interface=127.0.0.1", "tcp:8080:interface=127.0.0.1", "JMAP and webmail (put a TLS proxy in front)"),
    "metrics": ("tcp:9025:interface=127.0.0.1", "", "/metrics (Prometheus) and /healthz, without login: bind it where only the monitoring reaches"),
}

SCHEMA: dict[str, dict[str, Option]] = {
    "server": {
        "hostname": _o("str", "localhost", "Our name in greetings, Received headers and bounces.", example="mail.example.org"),
        "data_dir": _o("path", "var", "Where mail, users, the queue and certificates live (relative to the config file).", example="/var/lib/mailnet"),
        "demo_user": _o("bool", False, "Make demo@<first local domain> with a random password and print the login at start (on by default only when no config file is given)."),
    },
    "domains": {
        "local": _o("strlist", ["example.test"], "Domains whose mail we keep; everything else is relayed for authenticated users only.", example=["example.org"]),
        "subaddress_separator": _o("str", "+", "user+tag@domain is delivered to user@domain; empty turns this off."),
    },
    "listen": {
        key: _o("endpoint", dev, f"{doc}; \"\" disables.", example=prod)
        for key, (dev, prod, doc) in LISTEN_DEFAULTS.items()
    },
    "tls": {
        "cert": _o("path", "", "PEM certificate chain; empty = data_dir/tls/cert.pem (ECDSA) and rsa-cert.pem, made on first run and signed by a development CA, data_dir/tls/dev-ca.pem, that clients trust."),
        "key": _o("path", "", "PEM private key; empty = data_dir/tls/key.pem, made with the certificate."),
        "rsa_cert": _o("path", "", "A second PEM chain with an RSA key, offered to clients that cannot use an ECDSA [tls] cert (so they do not fall back to plaintext); empty = none (or the development one)."),
        "rsa_key": _o("path", "", "The PEM private key of rsa_cert."),
        "reload_poll": _o("int", 60, "Seconds between looks at the certificate and key files: changed ones (an ACME client's renewal) are loaded for new connections, open ones keep theirs; SIGHUP loads them at once. 0 = only on SIGHUP.", minimum=0),
    },
    "auth": {
        "users_file": _o("path", "", "Users, one per line in Dovecot passwd-file form; empty = data_dir/users."),
        "aliases_file": _o("path", "", "Aliases, 'address: target, target'; empty = data_dir/aliases."),
        "directory": _o("choice", "file", "Where users and aliases live: \"file\" (users_file and aliases_file: one node) or \"postgres\" (tables in the [postgres] database, shared by every node; `mailnet user`/`mailnet alias` write there; schema version 6).", choices=("file", "postgres")),
        "directory_refresh": _o("float", 5.0, "[auth] directory = \"postgres\": seconds between looks for users and aliases changed by another node (a login of a user this node does not know looks at once); a removed user or changed password is seen within this.", minimum=0.5),
        "hash": _o("choice", "argon2id", "Hash for new passwords (Dovecot schemes are all accepted when checking).", choices=("argon2id", "bcrypt", "sha512-crypt")),
        "allow_plaintext": _o("bool", False, "Accept passwords on connections without TLS (never on the public Internet)."),
        "failure_delay": _o("float", 1.0, "Seconds a login waits, before its password is checked, after a failed one from the same client address or for the same account (the failure's answer waits too); doubles per failure, up to 30.", minimum=0),
        "login_parallel_per_ip": _o("int", 1, "Password checks at once from one client address (IPv6: one /64); more wait their turn, so parallel connections do not skip the delay.", minimum=1),
        "login_queue": _o("int", 20, "Logins waiting their turn for one address or account; more are told to try again later (bounded memory, no pile-up).", minimum=1),
        "throttle_entries": _o("int", 100_000, "Client addresses and accounts whose failed logins are remembered, the oldest forgotten first (bounded memory).", minimum=100),
        "cache_seconds": _o("int", 300, "Remember a verified password this long (in memory only) so clients that log in often do not pay for argon2 each time; 0 = off.", minimum=0),
    },
    "store": {
        "backend": _o("str", "maildir", "\"maildir\", \"memory\" (lost at exit), \"postgres\" (settings in [postgres]), or \"package.module:factory\" for a third-party store."),
        "mail_dir": _o("path", "", "Root of the Maildirs (one per user, <root>/<domain>/<user>); empty = data_dir/mail."),
        "changes_kept": _o("int", 100_000, "Changes (one per Email, Mailbox or Thread changed) each account's journal remembers for JMAP /changes; a client with an older state resyncs. Bounds the journal's disk and the work of one answer.", minimum=100),
        "changes_poll": _o("float", 30.0, "Seconds between looks for another program's writes (an MDA, Dovecot, mutt) to an account that has listeners (push); our own changes are told at once. 0 = only when the state is asked.", minimum=0),
        "options": _o("table", {}, "[store.options]: a third-party backend's own settings, given to it as config.store.options and checked by it; the built-in backends take none."),
        "list_index_delay": _o("float", 2.0, "The maildir message list index (mailnet-list.sqlite) takes deliveries in, in the background, once they pause this many seconds: during a burst the CPU goes to SMTP.", minimum=0),
        "list_index_max_delay": _o("float", 30.0, "...but at the latest this many seconds after a delivery, however busy SMTP is (listing catches up on the spot anyway).", minimum=0),
        "list_index_keep_open": _o("int", 300, "Seconds a folder that the message list opened stays loaded, so that the next list does not load a large folder again (memory for speed); 0 = close at once.", minimum=0),
    },
    "quota": {
        "storage": _o("str", "", "Default storage limit per user (\"1G\", \"500M\"; empty = none), kept in each Maildir's maildirsize (Dovecot/Courier compatible); a users-file extra field userdb_quota_rule=*:storage=2G overrides it."),
        "messages": _o("int", 0, "Default limit of messages per user (0 = none); userdb_quota_rule=*:messages=N overrides it.", minimum=0),
        "warning": _o("int", 90, "Percent of a limit at which the user gets one warning message in INBOX (once per crossing); 0 = never.", minimum=0),
        "grace": _o("int", 10, "Percent of the storage limit the last message may take the user past it (Dovecot's quota_grace): a user under the limit is not refused a message that only just does not fit.", minimum=0),
    },
    "postgres": {
        "dsn": _o("str", "", "[store] backend = \"postgres\": a libpq connection string (\"host=db1 dbname=mailnet\"); empty = the options below. Put no password here: use password_file."),
        "host": _o("str", "", "Server host name, or the directory of its Unix socket (\"/var/run/postgresql\"); empty = libpq's default (the local socket)."),
        "port": _o("int", 5432, "Server port (also names the Unix socket).", minimum=1),
        "dbname": _o("str", "mailnet", "Database that `mailnet db init` made."),
        "user": _o("str", "mailnet", "Database role."),
        "password_file": _o("path", "", "File holding the role's password (read at start, kept out of the config and the logs); empty = none (peer or trust authentication, or ~/.pgpass)."),
        "pool_size": _o("int", 8, "Worker threads, each with one connection: queries in flight at once (the reactor never waits on the database).", minimum=1),
        "connect_timeout": _o("float", 5.0, "Seconds to wait for a connection before answering a temporary error (SMTP 451, IMAP NO, POP3 -ERR).", minimum=1),
        "statement_timeout": _o("float", 30.0, "Seconds one query may run before it is cancelled and answered as a temporary error.", minimum=1),
        "body_cache_bytes": _o("int", 32 * 1024 * 1024, "Bytes of recently read message bodies (each up to 1 MiB; larger ones are always streamed from the database) kept in memory by each node, keyed by their SHA-256 so they never go stale; 0 = no cache and no read-ahead.", minimum=0),
        "read_ahead": _o("int", 64, "Messages whose bodies one query reads ahead when IMAP FETCH, SEARCH or THREAD goes over many (at most 4 MiB per query, into the body cache); 0 = one query per message.", minimum=0),
        "bodies": _o("choice", "database", "Where message bodies go: \"database\" (body_chunks rows) or \"s3\" (one object per distinct message in an S3-compatible object store, named by its SHA-256; needs boto3: pip install mailnet[s3]).  Every node must say the same.", choices=("database", "s3")),
        "s3_endpoint": _o("str", "", "bodies = \"s3\": the object store's URL (\"https://s3.example.net\", a MinIO server); empty = AWS S3 of s3_region."),
        "s3_bucket": _o("str", "", "bodies = \"s3\": the bucket (made beforehand; checked at start)."),
        "s3_region": _o("str", "us-east-1", "bodies = \"s3\": the region the requests are signed for."),
        "s3_access_key_id": _o("str", "", "bodies = \"s3\": access key id; empty = boto3's own credential chain (environment, instance role)."),
        "s3_secret_file": _o("path", "", "bodies = \"s3\": file holding the secret access key (read at start, kept out of the config and the logs)."),
        "s3_prefix": _o("str", "", "bodies = \"s3\": put before every object's name (\"mailnet/\"); the name is the hex SHA-256 of the message. One prefix per database: the sweep of unreferenced bodies (mailnet db gc) removes objects under it that this database does not know."),
        "s3_timeout": _o("float", 10.0, "bodies = \"s3\": seconds to wait to connect or for a read before answering a temporary error (SMTP 451, IMAP NO, POP3 -ERR).", minimum=1),
        "gc_grace": _o("float", 86400.0, "bodies = \"s3\": the sweep (`mailnet db gc`, gc_interval) deletes an object without a body row only when it is older than this many seconds: longer than any upload-to-commit window and any clock skew between the object store and the nodes (docs/store.md \"Removing unreferenced bodies\").", minimum=0),
        "gc_interval": _o("float", 86400.0, "Seconds between sweeps of unreferenced bodies (rows without a message; with bodies = \"s3\", objects without a row older than gc_grace) on a running node; one node at a time does it (an advisory lock), the counts go to the log. 0 = only `mailnet db gc`.", minimum=0),
    },
    "relay": {
        "smarthost": _o("hostport", "", "\"host:port\" to send all outgoing mail through; empty = deliver by MX."),
        "smarthost_user": _o("str", "", "Login for the smarthost, if it wants AUTH."),
        "smarthost_password_file": _o("path", "", "File holding the smarthost password (kept out of this file)."),
        "smarthost_tls": _o("choice", "starttls", "\"starttls\" (required, verified), \"implicit\" (port 465 style) or \"opportunistic\".", choices=("starttls", "implicit", "opportunistic")),
        "mx_port": _o("int", 25, "Port used for MX delivery (tests point it elsewhere).", minimum=1),
        "require_tls": _o("strlist", [], "Destination domains that must offer STARTTLS with a certificate valid for the MX name."),
        "max_connections": _o("int", 20, "Outgoing SMTP connections in total.", minimum=1),
        "max_connections_per_destination": _o("int", 4, "Outgoing connections to one destination domain.", minimum=1),
        "messages_per_connection": _o("int", 100, "Messages sent over one connection before it is closed.", minimum=1),
        "tls_ca_file": _o("path", "", "PEM CA certificates that verify peers where TLS is required; empty = the system's trust store."),
        "connect_timeout": _o("int", 30, "Seconds to wait for a TCP connection to a remote MTA.", minimum=1),
        "reply_timeout": _o("int", 300, "Seconds to wait for each reply of a remote MTA (RFC 5321 s4.5.3.2: 5 minutes).", minimum=1),
        "data_timeout": _o("int", 600, "Seconds to wait for the reply after the message data (RFC 5321 s4.5.3.2.6: 10 minutes).", minimum=1),
    },
    "queue": {
        "retry_initial": _o("int", 300, "Seconds before the first retry (Postfix: 5 minutes).", minimum=1),
        "retry_max": _o("int", 4000, "Longest wait between retries (Postfix: about 67 minutes).", minimum=1),
        "lifetime": _o("int", 5 * 86400, "Seconds after which an undelivered message bounces (5 days).", minimum=1),
        "delay_warning": _o("int", 4 * 3600, "Send one delay DSN after this many seconds (0 = never).", minimum=0),
        "bounce_size_limit": _o("int", 50_000, "Bytes of the original message a DSN returns at most; a larger message is returned as its header, cut to this size (Postfix's default).", minimum=1024),
        "mx_notify": _o("choice", "failure", "NOTIFY=SUCCESS/DELAY from unauthenticated (MX) clients: \"failure\" treats them as the default (failure reports only), so strangers cannot have reports mailed to any address (a sender whose MAIL FROM domain passed SPF, with [mailauth] inbound, is honoured anyway: the report goes back to it); \"all\" honours them.", choices=("failure", "all")),
        "backend": _o("choice", "auto", "Where the outbound queue lives: \"spool\" (files under data_dir/queue, one node), \"postgres\" (the queue_items table in [postgres], shared by every node: docs/scaling.md), or \"auto\" (postgres when [store] backend = \"postgres\", else spool).", choices=("auto", "spool", "postgres")),
        "lease": _o("float", 120.0, "Shared queue: seconds a node holds the items it claimed without renewing its lease (renewed every third of it); a node dead (or cut off from the database) longer than this has its items taken over by the others.", minimum=1),
        "claim_interval": _o("float", 5.0, "Shared queue: seconds between two looks for items due and unclaimed (left by a dead node, or waiting) and for operator commands; sooner after a look that claimed a whole claim_batch, once the node holds less than half a batch.", minimum=0.1),
        "claim_batch": _o("int", 200, "Shared queue: items one look claims at most (a node takes its share, not the whole queue).", minimum=1),
    },
    "mailauth": {
        "sign": _o("bool", True, "DKIM-sign mail from our authenticated users (submission, and their local deliveries) once, before it is stored or spooled, with every key of its domain made by `mailnet dkim keygen` (no key: no signature)."),
        "inbound": _o("bool", False, "Check SPF, DKIM and DMARC on mail received without login (the MX) and add Authentication-Results; off in the development defaults (no DNS there), on in production.", example=True),
        "authserv_id": _o("str", "", "The authserv-id of our Authentication-Results (RFC 8601 s2.5); empty = [server] hostname."),
        "dmarc_reject": _o("choice", "reject", "Mail failing DMARC whose domain publishes p=reject: \"reject\" (550 5.7.1 at the end of DATA, RFC 7489 s6.6.3), \"junk\" (Junk folder) or \"label\" (header only).", choices=("reject", "junk", "label")),
        "dmarc_quarantine": _o("choice", "junk", "Mail failing DMARC with p=quarantine: \"junk\" (the Junk folder, RFC 7489 s6.3) or \"label\".", choices=("junk", "label")),
        "local_spoofing": _o("choice", "reject", "Mail without login claiming one of our local domains in MAIL FROM or From: \"reject\" (550 5.7.1 at MAIL FROM, or at the end of DATA for From; our users must log in; needs no DNS, so it applies with inbound off too) or \"label\".", choices=("reject", "label")),
        "dns_failure": _o("choice", "accept", "A DNS failure (temperror) in the checks: \"accept\" and label, or \"defer\" (451 4.7.0) mail whose DMARC record could not be fetched.", choices=("accept", "defer")),
        "threads": _o("int", 2, "Worker threads for pyspf's lookups and DKIM hashing; more messages wait their turn (bounded CPU and memory).", minimum=1),
        "spf_time_limit": _o("int", 20, "Seconds one SPF evaluation may spend on DNS, then temperror (RFC 7208 s4.6.4: at least 20).", minimum=1),
        "check_timeout": _o("int", 30, "Seconds all checks of one message may take (waiting for a thread included); after it the missing results are temperror.", minimum=1),
        "arc": _o("bool", True, "Validate the ARC chain (RFC 8617) of mail received without login and add arc=pass/fail/none to Authentication-Results (a label only: it never overrides DMARC). At most 50 ARC sets; keys fetched like DKIM's."),
        "dkim_signatures": _o("int", 5, "DKIM signatures verified per message, the first ones (RFC 6376 s6.1 lets a verifier limit them); bounds work per message.", minimum=1),
        "inline_size": _o("int", 64 * KB, "Messages up to this size are signed and DKIM-verified on the reactor thread (under a millisecond: less CPU than a thread round trip, and Python threads would not run it in parallel); larger ones in the worker threads.", minimum=0),
        "max_size": _o("int", 35 * MB, "Largest message signed or verified (dkimpy hashes a message in memory); larger ones are passed unsigned or labelled dkim=neutral.", minimum=1024),
        "dmarc_reports": _o("bool", True, "With inbound on: record each message checked whose From domain's DMARC record has rua= (data_dir/dmarc, one JSON line per message, written in batches) and mail each such domain a daily aggregate report (RFC 7489 s7.2) to its rua=mailto: addresses."),
        "dmarc_report_from": _o("str", "", "The From address of our DMARC reports; empty = MAILER-DAEMON@[server] hostname (as TLS-RPT's). They go with an empty reverse path, so a bounce cannot loop."),
        "dmarc_report_rows": _o("int", 10000, "Records (distinct source and results) in one DMARC report; the most frequent are kept and the report says how many were left out.", minimum=1),
        "dmarc_report_domains": _o("int", 10000, "Domains we keep DMARC report rows for per day (every sending domain could ask for reports); rows of more are counted as dropped.", minimum=1),
        "dmarc_rows_per_day": _o("int", 1000000, "DMARC report rows stored per day (about 300 bytes each); beyond, counted as dropped and logged once.", minimum=1),
    },
    "srs": {
        "enabled": _o("choice", "auto", "Sender Rewriting Scheme for mail we forward (an alias to another domain): the queue sends it with MAIL FROM SRS0=hash=time=domain=user@<domain> so SPF at the next hop checks us, and takes bounces to such addresses back to the sender. \"auto\": mail received without login (the MX) whose sender is not of a local domain; \"on\": also our authenticated users' mail from a sender of another domain; \"off\": never (bounces to SRS addresses are then refused too).", choices=("auto", "on", "off")),
        "domain": _o("str", "", "The domain of our SRS addresses: it must reach us (MX) and its SPF must allow us; empty = the first [domains] local domain."),
        "max_age": _o("int", 21, "Days an SRS address stays valid for bounces (postsrsd: 21; the timestamp wraps after 1024 days, so at most 1000).", minimum=1),
    },
    "mtasts": {
        "enabled": _o("bool", False, "MTA-STS (RFC 8461) for the mail we relay by MX: fetch each domain's policy over HTTPS and, in enforce mode, deliver only to the MX hosts it lists, over verified TLS; off in the development defaults (no DNS there), on in production.", example=True),
        "ca_file": _o("path", "", "PEM CA certificates that check the policy hosts (https://mta-sts.<domain>) and the TLS-RPT report receivers (rua=https:); empty = the system's trust store. MX certificates are checked with [relay] tls_ca_file."),
        "fetch_timeout": _o("int", 20, "Seconds for the _mta-sts TXT lookup and for fetching a policy; a slow policy host delays the mail that long, then it goes without a new policy (a cached one still applies). Also the limit of one TLS-RPT report POST.", minimum=1),
        "https_port": _o("int", 443, "Port of the policy hosts (RFC 8461 s3.3: 443; tests point it elsewhere).", minimum=1),
        "reports": _o("bool", True, "Count our TLS sessions by MX (data_dir/tlsrpt; domains without a policy as no-policy-found) and send each domain's _smtp._tls rua (mailto: and https:) a daily report (RFC 8460)."),
        "serve_mode": _o("choice", "off", "Our own policy at /.well-known/mta-sts.txt on the http listener: \"off\", \"testing\" (start here), \"enforce\" or \"none\" (withdrawing a policy); the http listener must be reached as https://mta-sts.<domain> through the TLS proxy.", choices=("off", "testing", "enforce", "none")),
        "serve_mx": _o("strlist", [], "The mx lines of our policy (\"*.example.org\" allowed); empty = [server] hostname."),
        "serve_max_age": _o("int", 604800, "max_age of our policy in seconds (one week; RFC 8461 s3.2 allows up to 31557600).", minimum=86400),
    },
    "dns": {
        "nameservers": _o("strlist", [], "\"ip:port\" list; empty = the system resolver."),
        "timeout": _o("int", 10, "Seconds to wait for a DNS answer.", minimum=1),
    },
    "limits": {
        "message_size": _o("int", 35 * MB, "Largest message accepted (SMTP SIZE, IMAP APPENDLIMIT).", minimum=1),
        "connections": _o("int", 1000, "Open connections per listener.", minimum=1),
        "connections_per_ip": _o("int", 50, "Open connections per client address per listener.", minimum=1),
        "listen_backlog": _o("int", 511, "Connections the kernel queues per listener before we accept them, for bursts (capped by net.core.somaxconn); an endpoint's own backlog= wins.", minimum=1),
        "auth_failures": _o("int", 5, "Failed logins on one connection before it is closed.", minimum=1),
        "smtp_line_length": _o("int", 1000, "Longest SMTP command or text line, CRLF included (RFC 5321 s4.5.3.1).", minimum=512),
        "smtp_recipients": _o("int", 100, "Recipients per message (RFC 5321 s4.5.3.1.8 minimum).", minimum=1),
        "smtp_errors": _o("int", 20, "Bad commands in one session before 421.", minimum=1),
        "smtp_command_timeout": _o("int", 300, "Seconds to wait for a command (RFC 5321 s4.5.3.2.7).", minimum=1),
        "smtp_data_timeout": _o("int", 600, "Seconds to wait for each block of message data.", minimum=1),
        "smtp_data_deadline": _o("int", 300, "Seconds a whole DATA or BDAT transfer may take, plus 1 s per min_data_rate bytes received (Postfix's per-request deadline): bytes do not restart it.", minimum=1),
        "min_data_rate": _o("int", 500, "Bytes/s a message body or IMAP literal must average to keep its deadline moving (Postfix smtpd_min_data_rate: 500; a 35 MB message at 500 B/s gets 19 hours).", minimum=1),
        "command_deadline": _o("int", 60, "Seconds a command may take from its first byte to its end, however the bytes trickle in (slowloris): an SMTP or POP3 line; an IMAP command with its literals, plus 1 s per min_data_rate bytes. Clients send a line at once.", minimum=1),
        "login_deadline": _o("int", 180, "Seconds from connecting to a completed login on IMAP, POP3 and SMTP submission, however busy the client (Dovecot: 3 minutes).", minimum=1),
        "imap_line_length": _o("int", 65536, "Longest IMAP command line, literals excluded.", minimum=1000),
        "imap_literal_size": _o("int", 35 * MB, "Largest IMAP literal (APPEND size).", minimum=1),
        "imap_idle_timeout": _o("int", 1800, "Seconds an IMAP session may stay silent (RFC 9051 s5.4: at least 30 minutes).", minimum=1800),
        "imap_connections_per_user": _o("int", 20, "Simultaneous IMAP sessions of one user.", minimum=1),
        "folders": _o("int", 1000, "Folders per user, INBOX included (CREATE beyond it: NO [LIMIT]); bounds LIST and disk use.", minimum=10),
        "folder_name_length": _o("int", 200, "Longest folder name in characters (Maildir stores it as one directory name).", minimum=16),
        "folder_depth": _o("int", 16, "Most levels of a folder name (a/b/c is 3).", minimum=1),
        "imap_search_contexts": _o("int", 10, "SEARCH/SORT results one IMAP session may have kept up to date (RFC 5267 RETURN (UPDATE)); past it the answer says NOUPDATE and gives the result once.", minimum=0),
        "imap_idle_poll": _o("float", 2.0, "Seconds between checks for changes made by other programs while an IMAP client is in IDLE (0 = never).", minimum=0),
        "imap_notify_mailboxes": _o("int", 200, "Mailboxes one IMAP session's NOTIFY (RFC 5465) may watch for message events, each an open folder handle; a NOTIFY that would watch more is NO [LIMIT].", minimum=1),
        "imap_notify_queue": _o("int", 1000, "Mailbox events (new, deleted, renamed, (un)subscribed mailboxes) that may wait for one NOTIFY session that does not read; past it the session gets [NOTIFICATIONOVERFLOW] and its NOTIFY ends (RFC 5465 s5.8).", minimum=10),
        "mime_parts": _o("int", 10000, "MIME parts of one message IMAP shows (Dovecot's limit); the last one's body runs to the end, so a message of 100,000 parts costs no more.", minimum=1),
        "mime_depth": _o("int", 100, "Nesting levels of MIME parts IMAP opens (Dovecot's limit); a multipart or message part at the last level is shown as one application/octet-stream part.", minimum=1),
        "pop3_idle_timeout": _o("int", 600, "Seconds a POP3 session may stay silent (RFC 1939: at least 10 minutes).", minimum=600),
        "pop3_line_length": _o("int", 255, "Longest POP3 command line, CRLF included (RFC 2449 s4: 255).", minimum=255),
        "http_request_size": _o("int", 35 * MB, "Largest HTTP request body (JMAP upload, webmail compose).", minimum=1),
    },
    "http": {
        "cors_origins": _o("strlist", [], "Origins (\"https://app.example.org\", exact match) whose web pages may call the JMAP API with an Authorization header (CORS preflight answered); empty = no cross-origin access. The webmail's cookie is never usable cross-origin."),
        "trusted_proxies": _o("strlist", [], "Addresses or networks (\"10.0.0.5\", \"10.0.0.0/24\") of the TLS proxies in front of the http listener: their X-Forwarded-For and X-Forwarded-Proto are believed; loopback is always trusted. Passwords are taken only from loopback, these, or with [auth] allow_plaintext."),
        "idle_timeout": _o("int", 120, "Seconds a kept-alive HTTP connection may wait for its next request.", minimum=5),
        "request_deadline": _o("int", 60, "Seconds a request's head and body may take to arrive, plus 1 s per [limits] min_data_rate bytes (slowloris): bytes do not restart it.", minimum=5),
        "max_size_request": _o("int", 10 * MB, "Largest JMAP API request body (RFC 8620 maxSizeRequest); a larger one is refused from its Content-Length, unread.", minimum=10_000),
        "max_size_upload": _o("int", 35 * MB, "Largest blob upload (RFC 8620 maxSizeUpload); also capped by [limits] http_request_size.", minimum=1),
        "max_concurrent_requests": _o("int", 4, "JMAP API requests one user may have in progress at once (RFC 8620 maxConcurrentRequests).", minimum=1),
        "max_concurrent_upload": _o("int", 4, "Uploads one user may have in progress at once (RFC 8620 maxConcurrentUpload).", minimum=1),
        "max_calls_in_request": _o("int", 32, "Method calls in one JMAP request (RFC 8620 maxCallsInRequest).", minimum=1),
        "max_objects_in_get": _o("int", 500, "Records one /get may ask for (RFC 8620 maxObjectsInGet).", minimum=1),
        "max_objects_in_set": _o("int", 500, "Records one /set may create, update and destroy (RFC 8620 maxObjectsInSet).", minimum=1),
        "blob_expiry": _o("int", 86400, "Seconds an uploaded blob is kept when nothing uses it (RFC 8620 s6.1: at least an hour).", minimum=3600),
        "push_ping_minimum": _o("int", 10, "Shortest EventSource ping interval a client may ask for, in seconds (RFC 8620 s7.3 allows a minimum of at most 30).", minimum=1),
        "push_connections_per_user": _o("int", 10, "EventSource connections one user may keep open.", minimum=1),
    },
    "jmap": {
        "submission_hold": _o("float", 5.0, "Seconds a JMAP EmailSubmission waits (undoStatus pending) before it is sent, so that the webmail can offer \"undo send\"; 0 = send at once.", minimum=0),
        "max_delayed_send": _o("int", 7 * 86400, "Seconds ahead a JMAP EmailSubmission may ask to be sent (RFC 8621 maxDelayedSend, FUTURERELEASE HOLDFOR/HOLDUNTIL of RFC 4865); the held message waits in the outbox journal and, at most 100 per user, in memory; 0 = no delayed send.", minimum=0),
        "push_subscriptions_per_user": _o("int", 10, "JMAP PushSubscriptions (RFC 8620 s7.2) one user may have.", minimum=0),
        "push_expires_max": _o("int", 7 * 86400, "Seconds ahead a PushSubscription's expires may be (RFC 8620 s7.2: the server may cap it; null is given this).", minimum=60),
        "push_allowed_prefixes": _o("strlist", [], "URL prefixes a PushSubscription may use although they are plain http or name a loopback, private or link-local address (e.g. \"http://127.0.0.1:\" in tests); every other push URL must be https to a public host."),
        "push_ca_file": _o("path", "", "A PEM CA certificate push URLs' servers are checked against instead of the system's trust store (a private push service, tests); empty = the system's."),
        "push_timeout": _o("float", 30.0, "Seconds one push POST may take (connect, send, answer).", minimum=1),
        "push_ttl": _o("int", 86400, "The TTL header of push messages (RFC 8030 s5.2): seconds the push service may keep one for an offline device.", minimum=0),
        "push_coalesce": _o("float", 1.0, "Seconds changes are gathered into one StateChange per subscription.", minimum=0),
        "push_attempts": _o("int", 5, "Failed POSTs in a row after which a PushSubscription is dropped.", minimum=1),
        "push_retry_initial": _o("float", 10.0, "Seconds before a failed push is retried; doubled each time up to push_retry_max.", minimum=0.1),
        "push_retry_max": _o("float", 600.0, "Longest wait between push retries, in seconds.", minimum=0.1),
        "vacation_period": _o("int", 7 * 86400, "Seconds before a sender gets another vacation auto-reply from the same user (RFC 3834 s2 suggests days; RFC 5230 defaults to 7 days).", minimum=3600),
    },
    "webmail": {
        "enabled": _o("bool", True, "Serve the webmail (a JMAP client in the browser) at / of the http listener, with cookie logins at /webmail/; false leaves JMAP only."),
        "session_idle": _o("int", 8 * 3600, "Seconds a webmail session lasts without a request (the user logs in again after).", minimum=60),
        "session_max": _o("int", 7 * 86400, "Seconds a webmail session lasts at most after its login, used or not.", minimum=60),
        "compose_html_max": _o("int", 1 * MB, "Largest request (bytes, the JSON around the HTML included) of a message written in the webmail that the server cleans for sending (/webmail/compose-html); a larger one is refused with 413. Also bounded by [limits] http_request_size.", minimum=1024),
        "inline_image_max": _o("int", 2 * MB, "Largest cid: image part put into a shown HTML message as a data: URI (the sandboxed frame cannot fetch it); larger ones are left out.", minimum=0),
    },
    "log": {
        "level": _o("choice", "info", "\"debug\" logs protocol dialogues (never passwords); \"info\" one line per event.", choices=("debug", "info", "warn", "error")),
        "format": _o("choice", "text", "\"text\": twistd's classic lines; \"json\": one JSON object per line (time, level, text and the event's fields: id, stage...) for log shippers.", choices=("text", "json")),
    },
}


def _describe(value):
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _check(path, section, key, opt: Option, value):
    def fail(problem):
        raise ConfigError(f"{path}: [{section}] {key}: {problem}")

    kind = opt.kind
    if kind in ("str", "path", "endpoint", "hostport", "choice"):
        if not isinstance(value, str):
            fail(f"expected a string, got {_describe(value)}")
        if "\x00" in value:
            fail("NUL character not allowed")
        if kind == "choice" and value not in opt.choices:
            fail(f"expected one of {', '.join(map(_describe, opt.choices))}, got {_describe(value)}")
        if kind == "endpoint" and value:
            problem = endpointProblem(value)
            if problem:
                fail(problem)
        if kind == "hostport" and value:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                fail(f'expected "host:port", got {_describe(value)}')
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            fail(f"expected true or false, got {_describe(value)}")
        return value
    if kind in ("int", "float"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if kind == "float":
            ok = ok or isinstance(value, float)
        if not ok:
            fail(f"expected {'an integer' if kind == 'int' else 'a number'}, got {_describe(value)}")
        if opt.minimum is not None and value < opt.minimum:
            fail(f"must be at least {opt.minimum:g}, got {value}")
        return value
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            fail(f"expected a list of strings, got {_describe(value)}")
        return list(value)
    if kind == "table":
        if not isinstance(value, dict):
            fail(f"expected a table ([{section}.{key}]), got {_describe(value)}")
        return copy.deepcopy(value)
    raise AssertionError(kind)


def endpointProblem(description):
    """
    Return why a Twisted server endpoint string is unusable, or None.

    Parses without listening.  Only stream endpoints we can serve on are
    accepted (tcp, tcp6, unix); TLS is applied by mailnet itself.
    """
    from twisted.internet import endpoints

    kind = description.split(":", 1)[0]
    if kind not in ("tcp", "tcp6", "unix"):
        return f"bad endpoint {_describe(description)}: use tcp:, tcp6: or unix: (TLS is set by the listener's role)"
    try:
        args = endpoints._parseServer(description, None)[1]
    except Exception as e:  # twisted raises assorted errors on bad syntax
        return f"bad endpoint {_describe(description)}: {e}"
    if kind in ("tcp", "tcp6"):
        if not args or not 0 <= args[0] < 65536:
            return f"bad endpoint {_describe(description)}: port out of range"
    return None


class Config:
    """
    A validated configuration.

    Sections are attributes holding namespaces: ``config.limits.message_size``.
    Paths are absolute.  ``config.source`` is the file (or None for the
    development defaults).
    """

    def __init__(self, values: dict, source: str | None, base: str):
        self.source = source
        self.base = base
        for section, opts in values.items():
            setattr(self, section, types.SimpleNamespace(**opts))

    @property
    def isDevelopment(self):
        return self.source is None

    @property
    def dataDir(self):
        return self.server.data_dir

    def path(self, section, key, default_name):
        """An optional path option, falling back to data_dir/default_name."""
        value = getattr(getattr(self, section), key)
        return value or os.path.join(self.server.data_dir, default_name)

    @property
    def certFile(self):
        return self.path("tls", "cert", os.path.join("tls", "cert.pem"))

    @property
    def keyFile(self):
        return self.path("tls", "key", os.path.join("tls", "key.pem"))

    @property
    def rsaCertFile(self):
        """The RSA certificate: configured, ours beside our own ECDSA one, or "" (none)."""
        if self.tls.rsa_cert or self.tls.cert:
            return self.tls.rsa_cert
        return os.path.join(self.server.data_dir, "tls", "rsa-cert.pem")

    @property
    def rsaKeyFile(self):
        if self.tls.rsa_cert or self.tls.cert:
            return self.tls.rsa_key
        return os.path.join(self.server.data_dir, "tls", "rsa-key.pem")

    @property
    def devCAFile(self):
        """The development CA that signs our own certificates (clients trust it)."""
        return os.path.join(self.server.data_dir, "tls", "dev-ca.pem")

    @property
    def devCAKeyFile(self):
        return os.path.join(self.server.data_dir, "tls", "dev-ca.key")

    @property
    def usersFile(self):
        return self.path("auth", "users_file", "users")

    @property
    def tokensFile(self):
        """App passwords (mailnet/tokens.py), beside the users file."""
        return self.usersFile + ".tokens"

    @property
    def aliasesFile(self):
        return self.path("auth", "aliases_file", "aliases")

    @property
    def mailDir(self):
        return self.path("store", "mail_dir", "mail")

    @property
    def spoolDir(self):
        return os.path.join(self.server.data_dir, "queue")

    @property
    def queueBackend(self):
        """``"spool"`` or ``"postgres"``: ``[queue] backend`` with ``auto`` resolved."""
        backend = self.queue.backend
        if backend == "auto":
            return "postgres" if self.store.backend == "postgres" else "spool"
        return backend

    @property
    def runDir(self):
        return os.path.join(self.server.data_dir, "run")

    def replace(self, **sections):
        """
        A copy with some options changed, for tests and embedding:
        ``config.replace(limits={"message_size": 1000})``.  Validated.
        """
        raw = {s: dict(vars(getattr(self, s))) for s in SCHEMA}
        for section, changes in sections.items():
            raw.setdefault(section, {}).update(changes)
        return fromDict(raw, source=self.source or "<replace>", base=self.base)


def fromDict(raw: dict, source: str = "<dict>", base: str | None = None) -> Config:
    """
    Validate a parsed TOML document against :data:`SCHEMA`.

    Unknown sections or keys are errors (a typo must not silently fall back
    to a default).  Relative paths are made absolute against ``base``.
    """
    base = os.path.abspath(base or os.getcwd())
    values = {}
    for section, table in raw.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: [{section}]: unknown section (known: {', '.join(SCHEMA)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {section}: expected a [{section}] table")
        for key in table:
            if key not in SCHEMA[section]:
                raise ConfigError(f"{source}: [{section}] {key}: unknown key")
    for section, opts in SCHEMA.items():
        table = raw.get(section, {})
        values[section] = {}
        for key, opt in opts.items():
            value = _check(source, section, key, opt, table.get(key, opt.default))
            if opt.kind == "path" and value:
                value = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
            values[section][key] = value
    if not values["domains"]["local"]:
        raise ConfigError(f"{source}: [domains] local: at least one local domain is needed")
    values["domains"]["local"] = [d.lower().rstrip(".") for d in values["domains"]["local"]]
    for proxy in values["http"]["trusted_proxies"]:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"{source}: [http] trusted_proxies: {proxy!r} is not an address or network")
    if values["srs"]["max_age"] > 1000:
        raise ConfigError(f"{source}: [srs] max_age: at most 1000 days (the SRS timestamp wraps after 1024)")
    values["srs"]["domain"] = values["srs"]["domain"].lower().rstrip(".")
    if values["quota"]["storage"]:
        from mailnet.store.quota import parseSize

        try:
            parseSize(values["quota"]["storage"])
        except ValueError as e:
            raise ConfigError(f"{source}: [quota] storage: {e}") from None
    return Config(values, None if source == "<defaults>" else source, base)


def load(path: str | None = None, checkFiles: bool = True) -> Config:
    """
    Load and validate a config file, or the development defaults if ``path``
    is None.

    @param checkFiles: also check that configured certificate files are
        readable and data_dir can be created and written.
    @raise ConfigError: with a one-line message.
    """
    if path is None:
        config = fromDict({"server": {"demo_user": True}}, source="<defaults>")
    else:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file")
        except PermissionError:
            raise ConfigError(f"{path}: permission denied")
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a directory")
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not valid UTF-8")
        config = fromDict(raw, source=path, base=os.path.dirname(os.path.abspath(path)))
    if checkFiles:
        checkEnvironment(config)
    return config


def checkEnvironment(config: Config):
    """
    Check what can only be checked on the machine: the data directory can be
    made and written, configured certificate and key files are readable.
    """
    where = config.source or "<defaults>"
    data = config.server.data_dir
    existing = data
    while not os.path.exists(existing):  # made at start; check it could be
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{where}: [server] data_dir: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == data else f"cannot be made: {existing} is not writable"
        raise ConfigError(f"{where}: [server] data_dir: {data} {what}")
    if bool(config.tls.cert) != bool(config.tls.key):
        which = "key" if config.tls.cert else "cert"
        raise ConfigError(f"{where}: [tls] {which}: cert and key must be given together")
    if bool(config.tls.rsa_cert) != bool(config.tls.rsa_key):
        which = "rsa_key" if config.tls.rsa_cert else "rsa_cert"
        raise ConfigError(f"{where}: [tls] {which}: rsa_cert and rsa_key must be given together")
    if config.tls.rsa_cert and not config.tls.cert:
        raise ConfigError(f"{where}: [tls] rsa_cert: needs [tls] cert and key too")
    for key in ("cert", "key", "rsa_cert", "rsa_key"):
        value = getattr(config.tls, key)
        if value:
            try:
                with open(value, "rb") as f:
                    head = f.read(65536)
            except OSError as e:
                raise ConfigError(f"{where}: [tls] {key}: cannot read {value}: {e.strerror}")
            if b"-----BEGIN" not in head:
                raise ConfigError(f"{where}: [tls] {key}: {value} is not a PEM file")
    pw = config.relay.smarthost_password_file
    if pw and not os.access(pw, os.R_OK):
        raise ConfigError(f"{where}: [relay] smarthost_password_file: cannot read {pw}")
    ca = config.relay.tls_ca_file
    if ca and not os.access(ca, os.R_OK):
        raise ConfigError(f"{where}: [relay] tls_ca_file: cannot read {ca}")
    if config.postgres.bodies == "s3" and not config.postgres.s3_bucket:
        raise ConfigError(f'{where}: [postgres] bodies = "s3" needs s3_bucket')
    secret = config.postgres.s3_secret_file
    if config.postgres.bodies == "s3" and secret and not os.access(secret, os.R_OK):
        raise ConfigError(f"{where}: [postgres] s3_secret_file: cannot read {secret}")
    if config.store.backend not in ("maildir", "memory", "postgres") and ":" not in config.store.backend:
        raise ConfigError(f'{where}: [store] backend: expected "maildir", "memory", "postgres" or "package.module:factory", got "{config.store.backend}"')


def example() -> str:
    """
    The text of etc/mailnet.toml: every option with its default and reason,
    set to production-minded values where those differ from the development
    defaults.
    """
    out = [
        "# mailnet configuration.",
        "#",
        "# Generated from mailnet/config.py by `mailnet config example`; a test keeps",
        "# the two in step.  Every option is shown; a commented value is the built-in",
        "# default, which is tuned for development (./var, 127.0.0.1, high ports).",
        "# Check a file with `mailnet config check FILE`.",
    ]
    for section, opts in SCHEMA.items():
        out.append("")
        out.append(f"[{section}]")
        for key, opt in opts.items():
            out.append(f"# {opt.doc}")
            if opt.example is not None and opt.example != opt.default:
                out.append(f"# default: {_toml(opt.default)}")
                out.append(f"{key} = {_toml(opt.example)}")
            else:
                out.append(f"# {key} = {_toml(opt.default)}")
    return "\n".join(out) + "\n"


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)
