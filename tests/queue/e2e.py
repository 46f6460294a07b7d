"""
Helpers for the queue's end-to-end tests: a test DNS server (twisted.names,
in a subprocess) and receiving SMTP servers (aiosmtpd, in a thread of the
test process), both on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import ssl
import subprocess
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from tests.harness import freePort

HERE = os.path.dirname(os.path.abspath(__file__))

TEST_DOMAINS = ["ok.test", "ok2.test", "grey.test", "reject.test", "tls.test", "slow.test"]


def zone():
    records = {}
    for domain in TEST_DOMAINS:
        records[domain] = {"MX": [[10, f"mx.{domain}"]]}
        records[f"mx.{domain}"] = {"A": ["127.0.0.1"]}
    records["nomx.test"] = {"A": ["127.0.0.1"]}  # implicit MX (RFC 5321 s5.1)
    records["nullmx.test"] = {"MX": [[0, ""]]}  # RFC 7505
    records["example.test"] = {"MX": [[10, "mx.example.test"]]}
    return records


class DNSServer:
    def __init__(self, directory):
        path = os.path.join(directory, "zone.json")
        with open(path, "w") as f:
            json.dump(zone(), f)
        self.process = subprocess.Popen([sys.executable, os.path.join(HERE, "dnsserver.py"), path],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"test DNS server did not start: {line}{self.process.stdout.read()}")
        self.port = int(line.split()[1])

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class SinkHandler:
    """
    Behaviour by recipient: ``@reject.test`` 550, ``@grey.test`` 451 the
    first time then 250, everything else 250.  Records messages and the
    client connections (by peer address) it saw.
    """

    def __init__(self, slow=0.0):
        self.slow = slow
        self.messages = []
        self.peers = []
        self.greyed = set()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            if session.peer not in self.peers:
                self.peers.append(session.peer)
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rsplit("@", 1)[-1].lower()
        if domain == "reject.test":
            return f"550 5.1.1 <{address}>: no such user here"
        if domain == "grey.test":
            with self.lock:
                first = address not in self.greyed
                self.greyed.add(address)
            if first:
                return "451 4.7.1 greylisted, come back later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.slow:
            await asyncio.sleep(self.slow)
        data = envelope.original_content or envelope.content
        record = {
            "sender": "" if envelope.mail_from == "<>" else envelope.mail_from, "rcpts": list(envelope.rcpt_tos), "data": data,
            "mail_options": list(envelope.mail_options), "peer": session.peer, "tls": session.ssl is not None,
            "auth": getattr(session, "auth_data", None) is not None or getattr(session, "authenticated", False),
            "message": email.message_from_bytes(data, policy=email.policy.default),
        }
        with self.changed:
            self.messages.append(record)
            self.changed.notify_all()
        return "250 2.0.0 OK queued"

    def wait(self, count, timeout=20):
        """Wait until ``count`` messages arrived (an event, not a sleep)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {len(self.messages)} of {count} messages arrived in {timeout}s")
                self.changed.wait(left)
            return list(self.messages)


class NodeSink(SinkHandler):
    """Records, with each message, the EHLO name of the node that brought it (tests with several nodes)."""

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        # No await since the append: the last record is this one.
        self.messages[-1]["helo"] = session.host_name
        return reply


def tally(messages):
    """``{Message-ID: [EHLO name of each node that delivered it, in order]}``."""
    counts = {}
    for m in list(messages):
        counts.setdefault(m["message"]["Message-ID"], []).append(m["helo"])
    return counts


class Sink:
    """An aiosmtpd server on host:port, 127.0.0.1 by default (optionally STARTTLS, AUTH)."""

    def __init__(self, port=None, handler=None, certFile=None, keyFile=None, auth=None, host="127.0.0.1"):
        self.host = host
        self.port = port or freePort(host)
        self.handler = handler or SinkHandler()
        self.certFile, self.keyFile, self.auth = certFile, keyFile, auth
        self.controller = None

    def start(self):
        kwargs = {}
        if self.certFile:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.certFile, self.keyFile)
            kwargs["tls_context"] = context
        if self.auth:
            user, password = self.auth

            def authenticator(server, session, envelope, mechanism, data):
                ok = data.login == user.encode() and data.password == password.encode()
                if ok:
                    session.authenticated = True
                return AuthResult(success=ok, handled=False)

            kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
        self.controller = Controller(self.handler, hostname=self.host, port=self.port, decode_data=False,
                                     enable_SMTPUTF8=True, **kwargs)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def waitFor(predicate, timeout=20, what="condition"):
    """Poll another process's state (the spool, its log) until true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s")
