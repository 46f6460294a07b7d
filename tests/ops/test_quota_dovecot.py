"""
Dovecot reads and writes our ``maildirsize`` (Maildir++ quota), and we read
its: mailnet delivers and counts, the Maildir moves to Dovecot (quota
plugin, ``quota = maildir``, the same limits), Dovecot's GETQUOTAROOT shows
the usage of our file (a line we add by hand included: Dovecot did not
recount), Dovecot's APPEND appends its line, and back on mailnet our
GETQUOTAROOT shows the file's sum.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import smtplib
import tempfile

import pytest

from mailnet import passwords
from mailnet.store.maildir.quota import parseMaildirsize
from tests.ops.quota_helpers import QUOTA_PW, QUOTA_USER, maildirsize, message, quotaServer, waitFor
from tests.pop3.dovecot import DOVECOT, Dovecot

QUOTA_PLUGIN = any(os.path.exists(d + "/dovecot/modules/lib10_quota_plugin.so") for d in ("/usr/lib", "/usr/libexec"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(DOVECOT is None or not QUOTA_PLUGIN,
                       reason="Dovecot with its quota plugin is not installed (Debian: dovecot-imapd)"),
]


QUOTA_CONFIG = """\
mail_plugins = $mail_plugins quota
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=10M:messages=1000
}
"""


def _quotaroot(port, user=QUOTA_USER, password=QUOTA_PW, append=None):
    c = imaplib.IMAP4("127.0.0.1", port)
    try:
        c.login(user, password)
        if append is not None:
            typ, data = c.append("INBOX", None, None, append)
            assert typ == "OK", data
        typ, data = c.getquotaroot("INBOX")
        assert typ == "OK", data
        text = b" ".join(x for x in data[1] if isinstance(x, bytes)).decode()
        storage = re.search(r"STORAGE (\d+) (\d+)", text)
        count = re.search(r"MESSAGE (\d+) (\d+)", text)
        return (int(storage.group(1)), int(storage.group(2))), (int(count.group(1)), int(count.group(2)))
    finally:
        c.logout()


def test_dovecot_reads_and_writes_our_maildirsize(make_server):
    server = quotaServer(make_server, storage="10M", messages=1000, extra={"auth": {"allow_plaintext": True}})
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as s:
        for n in range(3):
            s.sendmail("x@elsewhere.example", [QUOTA_USER], message(1500 + n * 1000, f"m{n}"))
    parsed = waitFor(lambda: (p := parseMaildirsize(maildirsize(server) or b"")) and p[2] == 3 and p,
                     what="three messages in maildirsize")
    assert maildirsize(server).startswith(b"10485760S,1000C\n")
    used = parsed[1]
    server.stop()
    # Another writer's line (what Dovecot or Courier's deliverquota append).
    path = os.path.join(server.maildir(QUOTA_USER), "maildirsize")
    with open(path, "ab") as f:
        f.write(b"4096 1\n")
    used += 4096

    base = tempfile.mkdtemp(prefix="quota-dovecot-", dir="/tmp")
    try:
        dovecot = Dovecot(base, server.certFile, os.path.join(server.dataDir, "tls", "key.pem"), protocols=("imap",))
        dovecot.extraConfig = QUOTA_CONFIG  # the maildir quota plugin, our limits
        dovecot.addUser(QUOTA_USER, passwords.make(QUOTA_PW, "sha512-crypt"))
        shutil.move(server.maildir(QUOTA_USER), dovecot.maildir(QUOTA_USER))
        dovecot.start()
        try:
            storage, count = _quotaroot(dovecot.imapPort)
            # Dovecot rounds up to KiB as we do; without our hand-made line it would be 4 KiB less.
            assert storage == ((used + 1023) // 1024, 10240), dovecot.log()
            assert count == (4, 1000)
            # Dovecot saves a message: one more line in the file.
            storage2, count2 = _quotaroot(dovecot.imapPort, append=message(2000, "from dovecot"))
            assert count2 == (5, 1000) and storage2[0] >= storage[0] + 1
        finally:
            dovecot.stop()
        data = open(os.path.join(dovecot.maildir(QUOTA_USER), "maildirsize"), "rb").read()
        limits, usedNow, messages, lines = parseMaildirsize(data)
        assert (limits.storage, limits.messages, messages) == (10 << 20, 1000, 5)
        assert used + 1900 < usedNow <= used + 2000  # Dovecot counts its file (LF line ends)

        # Back to mailnet: our GETQUOTAROOT shows the file's sum (no recount).
        shutil.move(dovecot.maildir(QUOTA_USER), server.maildir(QUOTA_USER))
        server.start()
        storage3, count3 = _quotaroot(server.port("imap"))
        assert storage3 == ((usedNow + 1023) // 1024, 10240)
        assert count3 == (5, 1000)
    finally:
        shutil.rmtree(base, ignore_errors=True)
