"""Slowloris: deadlines that the client's bytes do not extend (command line,
DATA/BDAT scaled by size, login on submission), in process with task.Clock."""

from mailnet.smtp import replies
from tests.smtp.helpers import plain
from tests.smtp.test_server import Client, clock, makeContext, mailbox  # noqa: F401 (clock: fixture)

LINE = b"421 4.4.2 Timeout: command line not completed in time, closing the connection\r\n"
DATA = b"421 4.4.2 Timeout: message data arriving too slowly, closing the connection\r\n"
LOGIN = b"421 4.4.2 Timeout: no login in time, closing the connection\r\n"


def dribble(c, clock, data, every):
    """Send ``data`` one byte at a time, ``every`` seconds apart; stop if cut off."""
    for i in range(len(data)):
        if c.transport.disconnecting:
            return i
        c.proto.dataReceived(data[i:i + 1])
        clock.advance(every)
    return len(data)


def test_reply_texts():
    assert replies.LINE_TIMEOUT.data == LINE
    assert replies.DATA_TIMEOUT.data == DATA
    assert replies.LOGIN_TIMEOUT.data == LOGIN


def test_dribbled_command_line_hits_the_deadline(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"command_deadline": 60})
    c = Client(context)
    c.read()
    # one byte every 5 s: far inside the 300 s idle timeout, each byte
    # would restart it; the line deadline counts from the first byte
    sent = dribble(c, clock, b"MAIL FROM:<someone@remote.example>\r\n", 5)
    assert c.transport.disconnecting
    assert sent == 12  # bytes at 0, 5, ..., 55 s; cut at 60 s
    assert c.read() == LINE


def test_whole_lines_sent_slowly_are_fine(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"command_deadline": 60})
    c = Client(context)
    c.read()
    for _ in range(10):  # a command every 50 s (idle, not dribbling)
        clock.advance(50)
        assert c.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
    # a line typed in 40 s (a person at a terminal)
    dribble(c, clock, b"NOOP\r\n", 8)
    assert not c.transport.disconnecting
    assert c.read() == b"250 2.0.0 OK\r\n"


def test_dribbled_data_hits_the_deadline_and_is_aborted(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"smtp_data_deadline": 300, "min_data_rate": 500})
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    c.read()
    body = b"Subject: x\r\n\r\n" + b"y" * 1000 + b"\r\n.\r\n"
    sent = dribble(c, clock, body, 3)  # 1 byte per 3 s, idle timeout 600 s
    assert c.transport.disconnecting
    assert 99 <= sent <= 102  # 300 s (+ 1/500 s per byte), not 3000 s
    assert c.read() == DATA
    assert mailbox(context, "bob@example.test") == []


def test_honest_slow_data_at_the_minimum_rate_passes(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"smtp_data_deadline": 30, "min_data_rate": 500})
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    c.read()
    line = b"x" * 498 + b"\r\n"  # 500 bytes
    c.send(b"Subject: slow\r\n\r\n")
    for _ in range(600):  # 300 KB at exactly 500 bytes/s: 600 s, far past 30 s
        clock.advance(1)
        c.send(line)
        assert not c.transport.disconnecting
    assert c.send(b".\r\n").startswith(b"250 ")
    assert len(mailbox(context, "bob@example.test")) == 1
    # the next transaction gets a fresh deadline
    assert b"354 " in c.send(b"MAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    clock.advance(29)
    assert c.send(b"quick\r\n.\r\n").startswith(b"250 ")


def test_bdat_transaction_has_one_deadline(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"smtp_data_deadline": 100, "min_data_rate": 500})
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\n")
    c.read()
    # tiny chunks, each well inside the idle timeout: the transaction as a
    # whole must still end within 100 s (+ its bytes / 500 s)
    for i in range(30):
        if c.transport.disconnecting:
            break
        c.send(b"BDAT 1\r\nx")
        clock.advance(9)
    assert c.transport.disconnecting
    assert c.read().endswith(DATA)
    assert mailbox(context, "bob@example.test") == []


def test_submission_must_log_in_in_time(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"login_deadline": 180})
    c = Client(context, "submissions")
    c.read()
    for _ in range(5):  # busy, never idle, never logging in
        assert c.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
        clock.advance(35)
    assert not c.transport.disconnecting
    clock.advance(6)  # 181 s
    assert c.read() == LOGIN
    assert c.transport.disconnecting


def test_login_stops_the_login_deadline(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"login_deadline": 180})
    c = Client(context, "submissions")
    c.send(b"EHLO c\r\n")
    clock.advance(170)
    c.read()
    assert c.send(f"AUTH PLAIN {plain('alice@example.test', 'alice-pw')}\r\n".encode()).startswith(b"235 ")
    for _ in range(5):
        clock.advance(100)
        assert c.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
    assert not c.transport.disconnecting


def test_login_deadline_waits_for_a_password_check(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"login_deadline": 10}, auth={"failure_delay": 8.0})
    c = Client(context, "submissions")
    c.send(b"EHLO c\r\n")
    clock.advance(5)
    c.read()
    c.send(f"AUTH PLAIN {plain('alice@example.test', 'wrong')}\r\n".encode())
    clock.advance(6)  # past the deadline, but the failure is still being delayed
    assert not c.transport.disconnecting
    clock.advance(2)
    assert c.read() == b"535 5.7.8 Authentication credentials invalid\r\n"
    clock.advance(1)
    assert c.read() == LOGIN
    assert c.transport.disconnecting


def test_mx_has_no_login_deadline(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"login_deadline": 10})
    c = Client(context, "smtp")
    c.read()
    for _ in range(5):
        clock.advance(9)
        assert c.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
    assert not c.transport.disconnecting


def test_one_timer_per_connection(tmp_path, clock):
    # the idle timeout and the deadlines share one timer: none is armed or
    # cancelled per command or per message
    context = makeContext(tmp_path, clock)
    c = Client(context)
    (timer,) = clock.getDelayedCalls()
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: x\r\n")
    assert clock.getDelayedCalls() == [timer]  # the data deadline runs on it
    assert c.send(b"\r\nbody\r\n.\r\n").startswith(b"250 ")
    c.send(b"NOOP\r\nNOOP")  # a line begun: the line deadline moves it sooner
    assert clock.getDelayedCalls() == [timer]
    c.proto.connectionLost(None)
    assert clock.getDelayedCalls() == []
