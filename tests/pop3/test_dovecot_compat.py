"""
Moving from Dovecot: a Maildir Dovecot has served keeps its UIDLs under
mailnet, so POP3 clients that leave mail on the server (and remember what
they fetched by UIDL) do not fetch everything again.
"""

import os
import poplib
import shutil
import tempfile

import pytest

from mailnet import passwords
from tests.pop3.clients import mimeMessage, newUser, pop3s, putMessage, retr
from tests.pop3.dovecot import DOVECOT, Dovecot

pytestmark = pytest.mark.slow


@pytest.mark.skipif(DOVECOT is None, reason="dovecot-pop3d is not installed")
def test_uidls_are_the_ones_dovecot_gave(make_server):
    server = make_server()
    name, pw = newUser(server)
    sent = [mimeMessage(f"d{i}") for i in range(3)]
    base = tempfile.mkdtemp(prefix="pop3-dovecot-", dir="/tmp")
    dovecot = Dovecot(base, server.certFile, os.path.join(server.dataDir, "tls", "key.pem"))
    try:
        dovecot.addUser(name, passwords.make(pw, "sha512-crypt"))
        maildir = dovecot.maildir(name)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(maildir, sub))
        for m in sent:
            with open(os.path.join(maildir, "new", f"{len(os.listdir(os.path.join(maildir, 'new')))}.M1P1.host"), "wb") as f:
                f.write(m.replace(b"\r\n", b"\n"))
        dovecot.start()
        c = poplib.POP3("127.0.0.1", dovecot.port, timeout=30)
        c.user(name)
        c.pass_(pw)
        dovecotUidls = c.uidl()[1]
        assert retr(c, 2) == sent[1]
        c.quit()
        dovecot.stop()
        assert os.path.exists(os.path.join(maildir, "dovecot-uidlist")), dovecot.log()
        # The admin moves the Maildir (index files and all) under mailnet.
        target = server.maildir(name)
        if os.path.exists(target):
            shutil.rmtree(target)
        shutil.copytree(maildir, target)
        c = pop3s(server, name, pw)
        assert c.uidl()[1] == dovecotUidls
        assert [retr(c, n) for n in (1, 2, 3)] == sent
        c.quit()
        # A message that arrives after the move continues the sequence.
        putMessage(server, name, mimeMessage("after"))
        c = pop3s(server, name, pw)
        uidls = c.uidl()[1]
        c.quit()
        assert uidls[:3] == dovecotUidls and len(set(uidls)) == 4
    finally:
        dovecot.stop()
        shutil.rmtree(base, ignore_errors=True)
