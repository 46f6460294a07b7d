"""Slowloris: deadlines that the client's bytes do not extend (a command
line, the login), in process with task.Clock."""

import pytest
from twisted.internet import task

from tests.pop3.helpers import Client, makeContext


@pytest.fixture
def clock():
    return task.Clock()


def dribble(c, clock, data, every):
    """Send ``data`` one byte at a time, ``every`` seconds apart; stop if cut off."""
    for i in range(len(data)):
        if c.closed:
            return i
        c.proto.dataReceived(data[i:i + 1])
        clock.advance(every)
    return len(data)


def test_dribbled_command_line_hits_the_deadline(tmp_path, clock):
    ctx = makeContext(tmp_path, clock, limits={"command_deadline": 60})
    c = Client(ctx)
    c.login()
    # one byte every 5 s: each would restart the 600 s idle timer
    sent = dribble(c, clock, b"LIST 1 and a long tail to keep going\r\n", 5)
    assert c.closed
    assert sent == 12  # bytes at 0, 5, ..., 55 s; cut at 60 s
    assert c.take() == b"-ERR Timeout: command line not completed within 60 seconds\r\n"


def test_lines_sent_whole_are_fine(tmp_path, clock):
    ctx = makeContext(tmp_path, clock, limits={"command_deadline": 60})
    c = Client(ctx)
    c.login()
    for _ in range(10):
        clock.advance(59)
        assert c.cmd("NOOP") == b"+OK\r\n"
    dribble(c, clock, b"NOOP\r\n", 9)  # typed by hand in 54 s
    assert not c.closed
    assert c.take() == b"+OK\r\n"


def test_login_deadline(tmp_path, clock):
    ctx = makeContext(tmp_path, clock, limits={"login_deadline": 180})
    c = Client(ctx)
    c.take()
    for _ in range(5):  # busy, never idle, never logged in
        assert c.cmd("CAPA").startswith(b"+OK")
        clock.advance(35)
    assert not c.closed
    clock.advance(6)
    assert c.take() == b"-ERR Timeout: no login within 180 seconds of connecting\r\n"
    assert c.closed


def test_login_stops_the_login_deadline(tmp_path, clock):
    ctx = makeContext(tmp_path, clock, limits={"login_deadline": 180})
    c = Client(ctx)
    clock.advance(170)
    assert c.login().endswith(b"+OK Logged in; 0 messages (0 octets)\r\n")
    for _ in range(5):
        clock.advance(100)
        assert c.cmd("NOOP") == b"+OK\r\n"
    assert not c.closed


def test_login_deadline_waits_for_a_password_check(tmp_path, clock):
    ctx = makeContext(tmp_path, clock, limits={"login_deadline": 10}, auth={"failure_delay": 8.0})
    c = Client(ctx)
    clock.advance(5)
    c.take()
    assert c.login(password="wrong") == b"+OK Send PASS\r\n"
    clock.advance(6)  # past the deadline while the failure is being delayed
    assert not c.closed
    clock.advance(2)
    assert c.take() == b"-ERR [AUTH] Authentication failed\r\n"
    clock.advance(1)
    assert c.take() == b"-ERR Timeout: no login within 10 seconds of connecting\r\n"
    assert c.closed
