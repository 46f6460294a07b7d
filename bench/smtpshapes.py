"""
SMTP clients for the benchmarks, by the shape of the traffic:

* ``persistent``: one session per client process, all its messages in it
  (EHLO once, AUTH once);
* ``connection``: a new TCP connection per message: EHLO, (AUTH), MAIL,
  RCPT, DATA, QUIT, as most MX traffic arrives;
* ``starttls``: the same with STARTTLS and a second EHLO before (AUTH and)
  the message; the certificate is not verified (a bench, not a client).

``load`` runs ``sessions`` client processes in parallel (multiprocessing,
so their CPU is not the server's or the bench's own) and returns the
number of messages sent.  ``login`` = (user, password) for submission.
"""

from __future__ import annotations

import multiprocessing
import smtplib
import ssl

SHAPES = ("persistent", "connection", "starttls")


def _context():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _one(host, port, shape, login, context):
    """A session, ready for MAIL: EHLO, STARTTLS and EHLO again for ``starttls``, AUTH if ``login``."""
    c = smtplib.SMTP(host, port, timeout=60)
    c.ehlo("client.bench.test")
    if shape == "starttls":
        c.starttls(context=context)
        c.ehlo("client.bench.test")
    if login:
        c.login(*login)
    return c


def send(host, port, count, shape, login, sender, rcpt, data):
    """``count`` messages from ``sender`` to ``rcpt``, in the given shape; returns ``count``."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}")
    context = _context() if shape == "starttls" else None
    if shape == "persistent":
        with _one(host, port, shape, login, context) as c:
            for _ in range(count):
                c.sendmail(sender, [rcpt], data)
        return count
    for _ in range(count):
        c = _one(host, port, shape, login, context)
        try:
            c.sendmail(sender, [rcpt], data)
        finally:
            c.quit()
    return count


def _client(args):
    return send(*args)


def load(port, messages, sessions, login, sender, rcpt, data, shape="persistent", host="127.0.0.1"):
    """``messages`` (rounded down to a multiple of ``sessions``) over ``sessions`` client processes."""
    per = messages // sessions
    with multiprocessing.Pool(sessions) as pool:
        return sum(pool.map(_client, [(host, port, per, shape, login, sender, rcpt, data)] * sessions))
