"""
The streamed JSON of the API (mailnet/jmap/jsonstream.py) and the body
values decoded in pieces (emailbody.lazyBodyValue): byte for byte the answer
the old code gave (one decode of the whole part, one json.dumps).
"""

import base64
import io
import json
import quopri

import pytest

from mailnet.jmap import emailbody, jsonstream
from mailnet.jmap.jsonstream import LazyText, encodePieces, iterBytes
from mailnet.mail import mime
from mailnet.mail.headers import paramValue
from tests.jmap.mailhelp import MailSession, message


def oldBodyValue(f, part, maxBytes):
    """emailbody._bodyValue as it was before the pieces (c40acdc): the reference."""
    problem = False
    chunks, kept = [], 0
    try:
        for chunk in mime.decodedChunks(f, part.bodyStart, part.end, part.encoding):
            chunks.append(chunk)
            kept += len(chunk)
            if maxBytes and kept > maxBytes + 4:
                break
    except (mime.UnknownEncoding, ValueError):
        problem = True
    data = b"".join(chunks)
    charset = (paramValue(part.params, "charset") or "us-ascii").strip().strip('"') or "us-ascii"
    try:
        text = data.decode(charset, "replace")
        problem = problem or "\ufffd" in text
    except LookupError:
        text = data.decode("utf-8", "replace")
        problem = True
    text = text.replace("\r\n", "\n")
    truncated = False
    if maxBytes and len(text.encode("utf-8")) > maxBytes:
        text = text.encode("utf-8")[:maxBytes].decode("utf-8", "ignore")
        truncated = True
    return {"value": text, "isEncodingProblem": problem, "isTruncated": truncated}


def streamed(value) -> bytes:
    return b"".join(iterBytes(encodePieces(value)))


# Long texts: every chunk boundary of the MIME decoder (64 KB) lands somewhere awkward.
LINE = "Caf\u00e9 \u2603 \U0001F600 \"quoted\" back\\slash\ttab \u0001 line.\r\n"
BIG = LINE * 30000  # ~1.4 MB of text


def part(body: bytes, ctype="text/plain; charset=utf-8", cte="8bit"):
    return (f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n").encode() + body


CORPUS = [
    ("small", message(body="Hi there.\r\n")),
    ("big utf-8 8bit", message(extra="Content-Type: text/plain; charset=utf-8\r\n", body=BIG)),
    ("big base64", message(extra="Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
                           body=base64.encodebytes(BIG.encode()).decode().replace("\n", "\r\n"))),
    ("big quoted-printable", message(
        extra="Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
        body=quopri.encodestring(BIG.encode()).decode().replace("\n", "\r\n"))),
    ("big latin-1", message(extra="Content-Type: text/plain; charset=iso-8859-1\r\n",
                            body="BODY").replace(b"BODY", "caf\u00e9 au lait\r\n".encode("latin-1") * 120000)),
    ("big broken utf-8", message(extra="Content-Type: text/plain; charset=utf-8\r\n", body="BODY")
     .replace(b"BODY", b"ok \xff line \xe2\x98\r\n" * 100000)),
    ("big unknown charset", message(extra="Content-Type: text/plain; charset=x-nonesuch\r\n", body=BIG)),
    ("big base64 charset", message(extra="Content-Type: text/plain; charset=base64\r\n", body=BIG)),
    ("big iso-2022-jp", message(extra="Content-Type: text/plain; charset=iso-2022-jp\r\n", body="BODY")
     .replace(b"BODY", ("\u65e5\u672c\u8a9e\u306e\u6587\r\n" * 60000).encode("iso-2022-jp"))),
    ("lone CRs", message(extra="Content-Type: text/plain; charset=utf-8\r\n", body="a\rb\r\r\n" * 200000)),
]


@pytest.fixture(scope="module")
def session():
    s = MailSession()
    ids = []
    for _, data in CORPUS:
        s.deliver(data)
    ids = s.ok("Email/query", sort=[{"property": "receivedAt"}])["ids"]
    assert len(ids) == len(CORPUS)
    return s, ids


REQUESTS = [
    ({"properties": ["bodyValues", "textBody"], "fetchTextBodyValues": True}),
    ({"properties": ["bodyValues"], "fetchAllBodyValues": True, "maxBodyValueBytes": 70000}),
    ({"properties": ["bodyValues"], "fetchAllBodyValues": True, "maxBodyValueBytes": 5}),
    ({"properties": ["bodyValues"], "fetchAllBodyValues": True, "maxBodyValueBytes": 300000}),
    ({"properties": ["id", "subject", "from", "preview", "bodyStructure"]}),
    ({}),
]


@pytest.mark.parametrize("args", REQUESTS)
def test_answers_are_the_old_bytes(session, args, monkeypatch):
    s, ids = session
    calls = [("Email/get", dict(args, ids=ids)), ("Email/get", dict(args, ids=ids[1:3])),
             ("Core/echo", {"hello": "\x00lazy-not-a-marker \U0001F600"})]
    new = s.request(*calls)
    monkeypatch.setattr(emailbody, "lazyBodyValue", oldBodyValue)
    old = s.request(*calls)
    reference = json.dumps(old, separators=(",", ":")).encode()
    assert streamed(new) == reference
    assert jsonstream.dumps(new).encode() == reference


def test_big_values_stay_in_pieces(session):
    s, ids = session
    answer = s.ok("Email/get", ids=ids, properties=["bodyValues"], fetchAllBodyValues=True)
    values = [v["value"] for e in answer["list"] for v in e["bodyValues"].values()]
    lazy = [v for v in values if isinstance(v, LazyText)]
    assert len(lazy) >= 8  # every big one
    assert all(len(p) <= 2 * 64 * 1024 for v in lazy for p in v.pieces)  # never the joined text
    pieces = encodePieces(answer)
    assert max(len(p) for p in iterBytes(pieces)) <= 6 * jsonstream.SLICE + 2 ** 16


def test_a_marker_in_the_data_is_just_data():
    token = LazyText(["x" * 10])
    # A string that looks like the placeholder cannot split the answer wrongly: the token is random.
    value = {"a": "\x00lazy-0-0", "b": token, "c": ["\x00lazy-", 1.5, None, True]}
    assert streamed(value) == json.dumps({"a": "\x00lazy-0-0", "b": "x" * 10, "c": ["\x00lazy-", 1.5, None, True]},
                                         separators=(",", ":")).encode()


def test_no_lazy_value_is_one_piece():
    assert encodePieces({"a": [1, "b"]}) == [b'{"a":[1,"b"]}']


def test_what_cannot_be_encoded_fails_before_the_first_piece():
    with pytest.raises(TypeError):
        encodePieces({"a": LazyText(["x"]), "b": object()})


def test_the_plain_form_is_a_str(session):
    # htmlpart and Email/parse read the text: _bodyValue still gives them a str.
    s, ids = session
    f = io.BytesIO(CORPUS[1][1])
    root = mime.scan(f)
    value = emailbody._bodyValue(f, root, 0)
    assert type(value["value"]) is str and value == oldBodyValue(f, root, 0)
    assert isinstance(emailbody.lazyBodyValue(f, root, 0)["value"], LazyText)
