"""The typed envelope: parse/serialize round trip, every rejection, and a fuzz of random JSON shapes."""

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from mailnet.queue import envelope as envmod
from mailnet.queue.envelope import Envelope, EnvelopeError, RecipientState, parse, validId
from mailnet.queue.spool import newQueueId

QID = "6650e0c1a2b3c4d5e6f7a00"


def full():
    return Envelope(
        id=QID, sender="alice@example.org", envid="QQ314159", ret="HDRS", smtputf8=True, body="8BITMIME",
        arrival=1717488000.12, size=2412, client="laptop.example.org [192.0.2.7]", auth="alice@example.org",
        held=True, delay_warned=True,
        recipients=[
            RecipientState("bob@example.net", orcpt="rfc822;bob@example.net", notify=["FAILURE", "DELAY"],
                           status="delayed", attempts=2, next_attempt=1717488912.4, last_attempt=1717488300.9,
                           last_error="451 4.7.1 greylisted, come back later", remote_mta="mx1.example.net"),
            RecipientState("team@example.org", status="sent", action="expanded", reported=True,
                           expanded_to=["carol@far.example"]),
            RecipientState("carol@far.example", orcpt="rfc822;team@example.org", status="failed", action="failed",
                           expanded_from="team@example.org", notify=["NEVER"]),
            RecipientState("dörte@example.org"),
        ])


def good():
    return json.loads(full().serialize())


def data(obj):
    return json.dumps(obj).encode()


def test_round_trip():
    e = full()
    assert parse(e.serialize(), QID) == e
    text = e.serialize().decode()
    assert text.endswith("}\n") and "\n \"recipients\"" in text and "dörte" in text


def test_new_ids_are_valid_and_ids_are_strict():
    assert validId(newQueueId())
    for bad in ("../../../x", "", "ABCDEF0123456789abcdef0", "abc", "a" * 33, None, 5, "0x" + "1" * 22, "g" * 22):
        assert not validId(bad)


def test_the_id_comes_from_the_file_name():
    obj = good()
    del obj["id"]
    assert parse(data(obj), QID).id == QID
    with pytest.raises(EnvelopeError, match="differs from the file name"):
        parse(data(dict(obj, id="../../../x")), QID)
    with pytest.raises(EnvelopeError, match="not a queue id"):
        parse(data(obj), "../../../x")


def test_defaults_for_optional_fields():
    e = parse(data({"sender": "", "arrival": 5, "recipients": [{"address": "a@b.test", "status": "pending"}]}), QID)
    assert (e.sender, e.body, e.size, e.held, e.ret, e.envid) == ("", "7BIT", 0, False, None, None)
    assert e.recipients[0] == RecipientState("a@b.test")


def _rcpt(**kw):
    obj = good()
    obj["recipients"][0].update(kw)
    return obj


def _drop(key, inRecipient=False):
    obj = good()
    del (obj["recipients"][0] if inRecipient else obj)[key]
    return obj


REJECTED = [
    (b"", "empty"),
    (b"{\"version\": 1, \"sender\"", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[" * 100000 + b"]" * 100000, "not JSON"),
    (b"[]", "not an object"),
    (b"NaN", "not a number"),
    (data(dict(good(), version=2)), "version"),
    (data(dict(good(), version=True)), "version"),
    (data(_drop("sender")), "missing \"sender\""),
    (data(dict(good(), sender=None)), "\"sender\" is null"),
    (data(dict(good(), sender=["a"])), "not a string"),
    (data(dict(good(), sender="a\nb@x")), "not an address"),
    (data(_drop("recipients")), "missing \"recipients\""),
    (data(dict(good(), recipients="bob@example.net")), "\"recipients\" is str"),
    (data(dict(good(), recipients=[])), "no recipients"),
    (data(dict(good(), recipients=["bob@example.net"])), "recipient 1 is str"),
    (data(_drop("arrival")), "missing \"arrival\""),
    (data(dict(good(), arrival="yesterday")), "not a number"),
    (data(dict(good(), arrival=-1)), "out of range"),
    (data(dict(good(), arrival=10 ** 30)), "out of range"),
    (b'{"sender": "", "arrival": Infinity, "recipients": []}', "not a number"),
    (data(dict(good(), envid="x" * 101)), "longer than 100"),
    (data(dict(good(), ret="SOME")), "not one of FULL, HDRS"),
    (data(dict(good(), body="QUOTED")), "not one of"),
    (data(dict(good(), smtputf8=1)), "not true or false"),
    (data(dict(good(), held="no")), "not true or false"),
    (data(dict(good(), size=1.5)), "not an integer"),
    (data(dict(good(), size=-1)), "out of range"),
    (data(dict(good(), client=7)), "not a string"),
    (data(_drop("status", True)), "recipient 1: missing \"status\""),
    (data(_drop("address", True)), "recipient 1: missing \"address\""),
    (data(_rcpt(status="sending")), "not one of pending"),
    (data(_rcpt(status=None)), "\"status\" is null"),
    (data(_rcpt(address="")), "not an address"),
    (data(_rcpt(address="x" * 1001)), "not an address"),
    (data(_rcpt(orcpt="rfc822;" + "x" * 500)), "longer than 500"),
    (data(_rcpt(orcpt="rfc822;a@b\r\nRCPT TO:<x@y>")), "\"orcpt\" holds whitespace"),
    (data(_rcpt(orcpt="rfc822;a b")), "\"orcpt\" holds whitespace"),
    (data(dict(good(), envid="QQ\r\nRSET")), "\"envid\" holds whitespace"),
    (data(_rcpt(notify="SUCCESS")), "not a list of NOTIFY values"),
    (data(_rcpt(notify=[])), "not a list of NOTIFY values"),
    (data(_rcpt(notify=["SOMETIMES"])), "not a valid NOTIFY list"),
    (data(_rcpt(notify=["NEVER", "FAILURE"])), "not a valid NOTIFY list"),
    (data(_rcpt(attempts="2")), "not an integer"),
    (data(_rcpt(attempts=True)), "not an integer"),
    (data(_rcpt(next_attempt=[1])), "not a number"),
    (data(_rcpt(action="teleported")), "not one of delivered"),
    (data(_rcpt(reported="yes")), "not true or false"),
    (data(_rcpt(expanded_to="a@b")), "not a list of addresses"),
    (data(_rcpt(expanded_to=[3])), "not a string"),
    (data(_rcpt(last_error="x" * 5000)), "longer than 4096"),
    (b" " * (envmod.MAX_FILE + 1), "larger than"),
]


@pytest.mark.parametrize("raw,reason", REJECTED, ids=[r for _, r in REJECTED])
def test_rejections(raw, reason):
    with pytest.raises(EnvelopeError) as e:
        parse(raw, QID)
    assert reason in str(e.value)
    assert "\n" not in str(e.value)


# -- Fuzz: whatever the file holds, parse raises nothing but EnvelopeError ------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                    st.sampled_from(["pending", "delayed", "sent", "failed", "FULL", "8BITMIME", "SUCCESS", QID,
                                     "a@b.test", "relayed"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=20)
KEYS = st.sampled_from(["version", "id", "sender", "envid", "ret", "smtputf8", "body", "arrival", "size", "client",
                        "auth", "held", "delay_warned", "recipients"])
RKEYS = st.sampled_from(["address", "orcpt", "notify", "status", "attempts", "last_error", "next_attempt",
                         "last_attempt", "remote_mta", "action", "reported", "expanded_to", "expanded_from"])
RECIPIENT = st.dictionaries(RKEYS, JSON, max_size=8)
SHAPED = st.fixed_dictionaries({}, optional={"recipients": st.one_of(JSON, st.lists(RECIPIENT, max_size=3))}).flatmap(
    lambda base: st.dictionaries(KEYS, JSON, max_size=8).map(lambda extra: {**extra, **base}))


def _check(raw):
    try:
        e = parse(raw, QID)
    except EnvelopeError as error:
        assert str(error) and "\n" not in str(error)
        return
    # What parse accepts is well typed and survives a round trip.
    assert isinstance(e.sender, str) and isinstance(e.recipients, list) and e.recipients
    assert all(r.status in envmod.STATUSES for r in e.recipients)
    assert math.isfinite(e.arrival)
    assert parse(e.serialize(), QID) == e


@settings(max_examples=300, deadline=None)
@given(SHAPED)
def test_fuzz_shaped_objects(obj):
    _check(json.dumps(obj).encode())


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_fuzz_any_json(obj):
    _check(json.dumps(obj).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes(raw):
    _check(raw)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.binary(max_size=3))
def test_fuzz_damaged_good_file(cut, junk):
    raw = full().serialize()
    _check(raw[:cut] + junk)
    _check(raw[:cut] + junk + raw[cut + len(junk):])


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0, max_value=envmod.MAX_TIME))
def test_accepted_times_can_be_shown(t):
    import datetime

    datetime.datetime.fromtimestamp(t)
    datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
