"""Slowloris: deadlines that the client's bytes do not extend (a command with
its literals, rate-based; the login), in process with task.Clock."""

from tests.imap.helpers import World, lines


def dribble(c, data, every):
    """Send ``data`` one byte at a time, ``every`` seconds apart; stop if cut off."""
    for i in range(len(data)):
        if c.out.closed:
            return i
        c.push(data[i:i + 1])
        c.world.clock.advance(every)
    return len(data)


def test_dribbled_command_line_hits_the_deadline():
    w = World(commandDeadline=60, minDataRate=500)
    c = w.client(login="alice@example.test")
    # one byte every 5 s: each would restart the 30-minute autologout timer
    sent = dribble(c, b"a1 SELECT INBOX and a long tail to keep it going\r\n", 5)
    assert c.out.closed
    assert sent == 13  # bytes at 0, 5, ..., 60 s (each buys 2 ms): cut at 60.03 s
    assert c.take() == b"* BYE Autologout; command not completed in time\r\n"


def test_whole_commands_are_fine_and_a_person_may_type():
    w = World(commandDeadline=60)
    c = w.client(login="alice@example.test")
    for _ in range(5):
        w.clock.advance(100)
        c.ok("NOOP")
    dribble(c, b"a1 NOOP\r\n", 6)  # typed by hand in 54 s
    assert not c.out.closed
    assert c.take() == b"a1 OK NOOP completed\r\n"


def test_dribbled_append_literal_hits_the_deadline():
    w = World(commandDeadline=60, minDataRate=500)
    c = w.client(login="alice@example.test")
    assert c.cmd("APPEND INBOX {1000}") == b"+ Ready for literal data\r\n"
    sent = dribble(c, b"x" * 1000, 3)
    assert c.out.closed
    assert 19 <= sent <= 22  # 60 s, not the 3000 s the literal would take
    assert c.take() == b"* BYE Autologout; command not completed in time\r\n"


def test_honest_slow_append_at_the_minimum_rate_passes():
    w = World(commandDeadline=10, minDataRate=500)
    c = w.client(login="alice@example.test")
    size = 300 * 500  # 300 s at exactly 500 bytes/s: far past the 10 s base
    body = (b"Subject: slow\r\n\r\n" + b"x" * size)[:size]
    assert c.cmd("APPEND INBOX {%d}" % size) == b"+ Ready for literal data\r\n"
    for i in range(0, size, 500):
        w.clock.advance(1)
        c.push(body[i:i + 500])
        assert not c.out.closed
    reply = c.feed(b"\r\n")
    assert b"OK [APPENDUID" in lines(reply)[-1]


def test_login_deadline():
    w = World(loginDeadline=180)
    c = w.client()
    for _ in range(5):  # busy, never idle, never logged in
        assert b"OK" in c.cmd("CAPABILITY")
        w.clock.advance(35)
    assert not c.out.closed
    w.clock.advance(6)
    assert c.take() == b"* BYE Autologout; no login within 180 seconds\r\n"
    assert c.out.closed


def test_login_stops_the_login_deadline():
    w = World(loginDeadline=180)
    c = w.client()
    w.clock.advance(110)  # (the pre-login autologout is 120 s of silence)
    c.cmd("NOOP")
    w.clock.advance(60)
    c.login()
    for _ in range(5):
        w.clock.advance(100)
        c.ok("NOOP")
    assert not c.out.closed


def test_login_deadline_waits_for_a_password_check():
    w = World(loginDeadline=10)
    w.throttle.baseDelay = 8.0
    c = w.client()
    w.clock.advance(5)
    assert c.cmd("LOGIN alice@example.test wrong") == b""
    w.clock.advance(6)  # past the deadline, while the failure is delayed
    assert not c.out.closed
    w.clock.advance(2)
    assert c.take().startswith(b"t1 NO [AUTHENTICATIONFAILED] ")
    w.clock.advance(1)
    assert c.take() == b"* BYE Autologout; no login within 10 seconds\r\n"
    assert c.out.closed


def test_sasl_response_counts_against_the_login_deadline():
    w = World(loginDeadline=30, commandDeadline=60)
    c = w.client()
    assert c.cmd("AUTHENTICATE PLAIN") == b"+ \r\n"
    dribble(c, b"AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==\r\n", 3)
    assert c.out.closed
    assert c.take() == b"* BYE Autologout; no login within 30 seconds\r\n"
