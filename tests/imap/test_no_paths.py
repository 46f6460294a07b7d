"""
No answer shows a file path (issue 12 defect 11): the error paths of IMAP
(missing mailboxes, bad names, a mailbox deleted under a session), POP3
and SMTP are driven against the real server, and no reply may contain the
server's data directory; a missing mailbox is named in the answer instead.
"""

import os
import poplib
import smtplib

import pytest

from tests.imap.test_list_conformance import Raw
from tests.imap.test_clients import fresh_user, message


def assert_no_path(server, replies):
    """No reply contains the data directory, its parent, or a Maildir++ path piece."""
    data = server.dataDir.encode()
    top = os.path.dirname(server.dataDir).encode()
    for reply in replies:
        assert data not in reply and top not in reply, reply
        assert b"/mail/example.test" not in reply and b"/tmp/" not in reply, reply


def answers(c, commands):
    """Every line of every answer (tagged and untagged) to the commands."""
    out = []
    for command in commands:
        tagged, untagged = c.cmd(command)
        out.append(tagged)
        out.extend(untagged)
    return out


def test_missing_mailbox_answers_name_it(imap_server):
    c = Raw(imap_server, fresh_user(imap_server))
    try:
        replies = []
        for command in ('SELECT "nosuch"', 'EXAMINE "nosuch/deeper"', 'STATUS "nosuch" (MESSAGES UIDNEXT)'):
            tagged, untagged = c.cmd(command)
            assert tagged.startswith(b"NO [NONEXISTENT]"), (command, tagged)
            assert b"nosuch" in tagged, tagged  # the mailbox is named
            replies += [tagged] + untagged
        assert_no_path(imap_server, replies)
    finally:
        c.close()


def test_error_paths_show_no_path(imap_server):
    user = fresh_user(imap_server)
    c = Raw(imap_server, user)
    other = Raw(imap_server, user)
    try:
        data = message("paths")
        c.sock.sendall(b"a0 APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
        assert c.f.readline().startswith(b"a0 OK")
        replies = answers(c, [
            'SELECT "nosuch"', 'EXAMINE "nosuch"', 'STATUS "nosuch" (MESSAGES)', 'DELETE "nosuch"',
            'DELETE "nosuch/child"', 'RENAME "nosuch" "other"', 'RENAME "nosuch/a" "x/y"',
            'SUBSCRIBE "nosuch"', 'UNSUBSCRIBE "nosuch"',
            'APPEND "nosuch" {3+}\r\nabc',
            # names the store refuses
            'SELECT "../../etc"', 'SELECT "/abs"', 'SELECT "a//b"', 'STATUS "a/../b" (MESSAGES)',
            'CREATE "../x"', 'CREATE "a/./b"', 'CREATE "a\\\\b"', 'RENAME "INBOX" "../up"',
            'DELETE "/"', 'SELECT "&Jjo"', 'CREATE "&AGE-"', 'SELECT ".."', 'SELECT "."',
            'APPEND "../x" {3+}\r\nabc', 'LIST "../.." "*"', 'LIST "" "../*"',
            'CREATE "gone"', 'DELETE "gone"', 'DELETE "gone"', 'SELECT "gone"',
            'SELECT INBOX', 'COPY 1 "nosuch"', 'MOVE 1 "nosuch"', 'UID COPY 1 "../x"',
            'COPY 1 "a/../../b"', 'CREATE "victim"',
        ])
        # The selected mailbox deleted by another session.
        replies += answers(c, ['SELECT "victim"'])
        replies += answers(other, ['DELETE "victim"', 'SELECT "victim"', 'STATUS "victim" (MESSAGES)'])
        c.sock.sendall(b"z NOOP\r\n")
        bye = c.f.readline()
        assert bye.startswith(b"* BYE"), bye
        replies.append(bye)
        assert_no_path(imap_server, replies)
        assert any(r.startswith(b"NO") for r in replies)
    finally:
        c.close()
        other.close()


def test_pop3_and_smtp_replies_show_no_path(imap_server):
    user = fresh_user(imap_server)
    replies = []
    p = poplib.POP3("127.0.0.1", imap_server.port("pop3"), timeout=20)
    try:
        replies.append(p.getwelcome())
        replies.append(p.user(user[0]))
        replies.append(p.pass_(user[1]))
        for command in ("STAT", "LIST 99", "RETR 1", "RETR 99", "DELE 99", "TOP 99 0", "UIDL 99", "RETR x",
                        "RETR ../../etc/passwd", "LIST -1"):
            try:
                replies.append(p._shortcmd(command))
            except poplib.error_proto as e:
                replies.append(e.args[0])
    finally:
        p.quit()
    s = smtplib.SMTP("127.0.0.1", imap_server.port("smtp"), timeout=20)
    try:
        replies.append(s.ehlo("client.example.test")[1])
        replies.append(s.mail("bob@example.test")[1])
        for rcpt in ("nosuch@example.test", "alice+../../x@example.test", "alice+nosuch@example.test",
                     '"../x"@example.test', "a/b@example.test", "x@../example.test"):
            replies.append(s.rcpt(rcpt)[1])
    finally:
        s.quit()
    assert_no_path(imap_server, replies)


def test_store_errors_name_the_folder_not_the_path(tmp_path):
    """In-process: the Maildir store's NoSuchFolder / NoSuchAccount carry names."""
    import shutil

    from mailnet.store.interfaces import NoSuchAccount, NoSuchFolder
    from mailnet.store.maildir import MaildirStore
    from mailnet.store.testing import result, syncRunner

    root = str(tmp_path / "mail")
    store = MaildirStore(root, runner=syncRunner)
    account = result(store.getAccount("carol@example.test"))
    with pytest.raises(NoSuchFolder) as e:
        result(account.openFolder("Nope/Deeper"))
    assert str(e.value) == "Nope/Deeper"
    # A folder removed on disk under an open handle (another program).
    result(account.createFolder("Old/Box"))
    folder = result(account.openFolder("Old/Box"))
    shutil.rmtree(os.path.join(root, "example.test", "carol", ".Old.Box"))
    with pytest.raises(NoSuchFolder) as e:
        result(folder.refresh())
    assert str(e.value) == "Old/Box"
    folder.close()
    with pytest.raises(NoSuchAccount) as e:
        result(store.getAccount("nobody@example.test", create=False))
    assert str(tmp_path) not in str(e.value) and "nobody" in str(e.value)
