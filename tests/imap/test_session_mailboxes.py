"""
The session in process (test_session.py): mailbox management and LIST,
names that must not leave the store, modified UTF-7 and IMAP4rev2's UTF-8
names, NAMESPACE/ID/ENABLE, a selected mailbox deleted by another session,
store name errors as NO.
"""

import re

import pytest

from tests.imap.session_helpers import tagged
from tests.imap.session_helpers import world  # noqa: F401 (a fixture)


# Mailboxes and names


def test_mailbox_management_and_list(world):
    a = world.client(login="alice@example.test")
    a.ok("CREATE Work/2024/")
    a.ok("CREATE &AMk-t&AOk-")  # "Été" in modified UTF-7
    assert b"NO [ALREADYEXISTS]" in a.cmd("CREATE Work")
    reply = a.cmd('LIST "" *')
    assert b'* LIST (\\HasChildren) "/" Work' in reply
    assert b'* LIST (\\HasNoChildren) "/" Work/2024' in reply
    assert b'* LIST (\\HasNoChildren) "/" &AMk-t&AOk-' in reply
    assert b'* LIST (\\HasNoChildren \\Sent) "/" Sent' in reply
    reply = a.cmd('LIST "" %')
    assert b"Work/2024" not in reply and b" Work\r\n" in reply
    assert a.cmd('LIST "" ""').startswith(b'* LIST (\\Noselect) "/" ""')
    reply = a.cmd('LIST "Work/" %')
    assert b"Work/2024" in reply and b"INBOX" not in reply
    a.ok("RENAME Work Job")
    assert b"Job/2024" in a.cmd('LIST "" *')
    a.ok("DELETE Job/2024")
    assert b"NO [NONEXISTENT]" in a.cmd("DELETE Job/2024")
    assert b"NO" in a.cmd("DELETE INBOX")
    a.ok("UNSUBSCRIBE Sent")
    reply = a.cmd('LSUB "" *')
    assert b"Sent" not in reply and b"Trash" in reply
    reply = a.cmd('LIST (SUBSCRIBED) "" * RETURN (CHILDREN)')
    assert b"\\Subscribed" in reply and b"Sent" not in reply
    # RFC 3501 s6.3.9, RFC 5258 s3: a subscribed name whose folder is gone
    a.ok("SUBSCRIBE Gone/Away")
    assert b'* LSUB (\\Noselect) "/" Gone/Away' in a.cmd('LSUB "" *')
    assert re.search(rb'\* LIST \(\\NonExistent [^)]*\\Subscribed\) "/" Gone/Away\r\n', a.cmd('LIST (SUBSCRIBED) "" *'))
    assert b"Gone" not in a.cmd('LIST "" *') and b"Gone" not in a.cmd('LIST "" * RETURN (SUBSCRIBED)')
    reply = a.cmd('LIST (SPECIAL-USE) "" *')
    assert b"INBOX" not in reply and b"\\Junk" in reply
    reply = a.cmd('LIST "" (INBOX Trash) RETURN (STATUS (MESSAGES UIDNEXT))')
    assert re.search(rb'\* LIST \([^)]*\) "/" INBOX\r\n\* STATUS INBOX \(MESSAGES 0 UIDNEXT 1\)', reply)


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/etc", "a//b", '"a\\\\b"', "~{3+}\r\na\x00b"])
def test_names_cannot_leave_the_store(world, name):
    a = world.client(login="alice@example.test")
    reply = a.cmd("CREATE " + name)
    assert re.search(rb"t\d+ (NO|BAD) ", reply), reply
    assert b"OK" in tagged(a.cmd("NOOP"))


def test_bad_mutf7_is_refused(world):
    a = world.client(login="alice@example.test")
    assert b"NO [CANNOT] Mailbox name is not valid" in a.cmd("CREATE &Jjo!")
    assert b"NO [CANNOT]" in a.cmd('CREATE "caf\xc3\xa9"'.encode("latin-1"))


def test_imap4rev2_uses_utf8_names_and_esearch(world):
    a = world.client(login="alice@example.test")
    assert a.cmd("ENABLE IMAP4rev2").startswith(b"* ENABLED IMAP4rev2")
    a.ok('CREATE "\xc3\x89t\xc3\xa9"'.encode("latin-1"))
    assert '"\u00c9t\u00e9"'.encode() in a.cmd('LIST "" *')
    reply = a.cmd("SELECT INBOX")
    assert b"RECENT" not in reply and b'* LIST (' in reply
    assert b'* ESEARCH (TAG "t6")' in a.cmd("SEARCH ALL")


def test_namespace_id_enable(world):
    a = world.client(login="alice@example.test")
    assert b'* NAMESPACE (("" "/")) NIL NIL' in a.cmd("NAMESPACE")
    assert b'* ID ("name" "mailnet"' in a.cmd('ID ("name" "test")')
    assert a.cmd("ENABLE CONDSTORE FOO").startswith(b"* ENABLED CONDSTORE\r\n")
    assert a.cmd("ENABLE CONDSTORE").startswith(b"* ENABLED\r\n")


def test_deleted_selected_mailbox(world):
    a = world.client(login="alice@example.test")
    a.ok("CREATE Doomed")
    a.ok("SELECT Doomed")
    b = world.client(login="alice@example.test")
    b.ok("DELETE Doomed")
    assert b"* BYE Selected mailbox was deleted" in a.cmd("NOOP")
    assert a.out.closed


def test_store_name_errors_map_to_no(world):
    a = world.client(login="alice@example.test")
    assert b"NO [CANNOT] Invalid mailbox name" in a.cmd("SELECT a/")
    assert b"NO [CANNOT] Invalid mailbox name" in a.cmd("STATUS ../x (MESSAGES)")
    assert b"NO [ALREADYEXISTS]" in a.cmd("RENAME Sent Trash")


def test_deleted_selected_mailbox_select_elsewhere_or_close(world):
    a = world.client(login="alice@example.test")
    a.ok("CREATE Doomed")
    a.ok("SELECT Doomed")
    b = world.client(login="alice@example.test")
    b.ok("DELETE Doomed")
    assert b"* 0 EXISTS" in a.ok("SELECT INBOX")
    a.ok("CREATE Doomed2")
    a.ok("SELECT Doomed2")
    b.ok("DELETE Doomed2")
    assert b"OK CLOSE completed" in a.cmd("CLOSE")
    assert a.session.state == "authenticated" and not a.out.closed
