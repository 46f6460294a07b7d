"""The MIME builder (mailnet/mail/compose.py), round-tripped through the shared parser (mailnet/mail/mime.py)."""

import io

from hypothesis import given, settings, strategies as st

from mailnet.jmap.emailbody import Structure, rawFields
from mailnet.mail import compose, mime
from mailnet.mail.headers import decodeWords
from mailnet.mail.summary import addresses


def decoded(raw, part):
    return b"".join(mime.decodedChunks(io.BytesIO(raw), part.bodyStart, part.end, part.encoding))


def header(raw, name):
    root = mime.scan(io.BytesIO(raw))
    values = [v for n, v in rawFields(root.header) if n.lower() == name.lower()]
    return values[-1] if values else None


def canonical(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def test_headers_encoded_and_lines_short():
    fields = [compose.addressList("From", [("Jürgen Müller", "j@example.test")]),
              compose.addressList("To", [("A, B", "a@example.test"), (None, "b@example.test")] * 10),
              compose.unstructured("Subject", "Grüße aus Köln " * 20),
              compose.date("Date", 0), compose.messageIdList("References", [f"id{i}@example.test" for i in range(30)])]
    raw = compose.build(fields, compose.Part("text/plain", content=b"hi\n", charset="utf-8"))
    assert all(len(line) <= 78 for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n"))
    assert decodeWords(" ".join(header(raw, "Subject").split("\r\n")).strip()).replace("  ", " ").strip() == \
        ("Grüße aus Köln " * 20).strip()
    assert addresses(header(raw, "From").encode()) == (("Jürgen Müller", "j@example.test"),)
    assert addresses(header(raw, "To").encode())[:2] == (("A, B", "a@example.test"), (None, "b@example.test"))
    assert header(raw, "Date").strip() == "Thu, 01 Jan 1970 00:00:00 +0000"
    assert compose.date("Date", 0, -330) == "Date: Wed, 31 Dec 1969 18:30:00 -0530"
    assert compose.date("Date", 86400, 60) == "Date: Fri, 02 Jan 1970 01:00:00 +0100"
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_encoding_choice():
    assert compose.chooseEncoding(b"plain text\r\n", True) == "7bit"
    assert compose.chooseEncoding("café au lait, mostly ascii".encode(), True) == "quoted-printable"
    assert compose.chooseEncoding("ÄÖÜßäöü".encode(), True) == "base64"
    assert compose.chooseEncoding(b"x" * 2000, True) == "quoted-printable"
    assert compose.chooseEncoding(b"a\rb", True) == "base64"
    assert compose.chooseEncoding(b"%PDF", False) == "base64"


def test_control_characters_refused():
    for bad in ("a\x08b", "a\rb", "a\x00"):
        try:
            compose.unstructured("Subject", bad)
        except compose.ComposeError:
            continue
        raise AssertionError(bad)


def test_strip_bcc_keeps_the_rest():
    raw = b"From: a@x\r\nBcc: b@y,\r\n c@z\r\nTo: d@w\r\n\r\nBcc: body line\r\n"
    assert compose.stripFields(raw, ["Bcc"]) == b"From: a@x\r\nTo: d@w\r\n\r\nBcc: body line\r\n"


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(text=texts, html=st.one_of(st.none(), texts), blobs=st.lists(st.binary(max_size=500), max_size=3),
       subject=st.text(st.one_of(st.characters(blacklist_categories=("Cs", "Cc")), st.sampled_from(["\n", "\t"])),
                       max_size=200), name=names)
def test_round_trip(text, html, blobs, subject, name):
    body = compose.Part("text/plain", content=text.encode("utf-8"), charset="utf-8")
    if html is not None:
        body = compose.Part("multipart/alternative", subParts=[
            body, compose.Part("text/html", content=html.encode("utf-8"), charset="utf-8")])
    leaves = [compose.Part("application/octet-stream", content=b, name=name, disposition="attachment")
              for b in blobs]
    root = compose.Part("multipart/mixed", subParts=[body] + leaves) if leaves else body
    raw = compose.build([compose.unstructured("Subject", subject),
                         compose.addressList("From", [(name, "x@example.test")])], root)
    lines = raw.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines) and b"\r" not in b"".join(lines).replace(b"\r\n", b"")
    scanned = mime.scan(io.BytesIO(raw))
    structure = Structure("e1", scanned)
    leavesFound = [structure.leaves[k] for k in sorted(structure.leaves)]
    texts_ = [canonical(text)] + ([canonical(html)] if html is not None else [])
    assert [decoded(raw, p) for p in leavesFound] == texts_ + blobs
    wantSubject = " ".join(subject.replace("\r\n", " ").replace("\n", " ").replace("\t", " ").split(" "))
    got = header(raw, "Subject")
    got = decodeWords(got.replace("\r\n", "")).strip() if "=?" in got else got.replace("\r\n", "").strip()
    assert got == wantSubject.strip()
    if leaves:
        assert all(part["name"] == name for part in structure.tree["subParts"][1:])
    assert addresses(header(raw, "From").encode())[0][1] == "x@example.test"
