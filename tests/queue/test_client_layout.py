"""The SMTP client in three modules: the old import path still works, and the machine needs no Twisted."""

import subprocess
import sys

from mailnet.queue import client, clientmachine, replyparser


def test_old_names_are_the_new_modules_objects():
    moved = {"clientmachine": clientmachine, "replyparser": replyparser}
    found = 0
    for name in client.__all__:
        for module in moved.values():
            if hasattr(module, name):
                assert getattr(client, name) is getattr(module, name), name
                found += 1
    # what workers.py, relay.py, fakes.py and the tests import from client
    assert found >= 15
    for name in ("Recipient", "Transaction", "Result", "ClientMachine", "ReplyParser", "ProtocolError", "Done"):
        assert getattr(client, name).__module__ != client.__name__, name


def test_the_machine_and_the_reply_parser_import_no_twisted():
    code = ("import sys, mailnet.queue.clientmachine, mailnet.queue.replyparser; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'twisted', 'zope'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
