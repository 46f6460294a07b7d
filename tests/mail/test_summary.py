"""
mailnet.mail.summary: the list fields of a message (JMAP from/to/cc,
subject, sentAt, messageId, hasAttachment, preview), with Hypothesis.
"""

import email.message
import email.headerregistry
import email.policy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailnet.mail import summary
from mailnet.mail.summary import Summary, summarize

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def crlf(text):
    return text.replace("\n", "\r\n").encode("utf-8")


PLAIN = crlf("""From: Alice Example <alice@example.test>
To: bob@example.test, "Carol, C." <carol@example.test>
Cc: undisclosed-recipients:;
Subject: Lunch
 tomorrow?
Date: Tue, 2 Jan 2024 10:30:00 +0200
Message-ID: <m1@example.test>

Shall we   meet
at noon?
""")


def test_plain_message():
    s = summarize(PLAIN)
    assert s.subject == "Lunch tomorrow?"
    assert s.sender == (("Alice Example", "alice@example.test"),)
    assert s.to == ((None, "bob@example.test"), ("Carol, C.", "carol@example.test"))
    assert s.cc == ()
    assert s.sentAt == 1704184200.0
    assert s.messageId == "m1@example.test"
    assert not s.hasAttachment
    assert s.preview == "Shall we meet at noon?"
    assert Summary.fromJson(s.toJson()) == s


def test_rfc2047_words_and_8bit_headers():
    data = (b"From: =?iso-8859-1?q?J=F6rg?= <j@example.test>\r\n"
            b"Subject: =?utf-8?b?w6l0w6k=?= =?utf-8?q?_d=C3=A9j=C3=A0?= raw \xc3\xbc\r\n\r\nx\r\n")
    s = summarize(data)
    assert s.sender == (("Jörg", "j@example.test"),)
    assert s.subject == "été déjà raw ü"


def test_quoted_printable_and_base64_with_charsets():
    qp = crlf("Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
              "Gr=FC=DFe, soft=\nbreak\n")
    assert summarize(qp).preview == "Grüße, softbreak"
    b64 = crlf("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
               "w6l0w6kgw6AgUGFyaXMK\n")
    assert summarize(b64).preview == "été à Paris"
    unknown = crlf("Content-Type: text/plain; charset=x-nonsense\n\nhello\n")
    assert summarize(unknown).preview == "hello"


def test_html_only_is_stripped_to_text():
    data = crlf('Content-Type: text/html; charset="utf-8"\n\n<html><head><title>T</title>'
                "<style>p {color: red}</style><script>alert(1)</script></head>"
                "<body><p>Hello&nbsp;<b>world</b> &amp; &lt;friends&gt;</p><p>Bye</p></body></html>\n")
    assert summarize(data).preview.replace("\xa0", " ") == "Hello world & <friends> Bye"


def test_alternative_prefers_plain_and_attachment_is_found():
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = "Report"
    msg.set_content("the plain text")
    msg.add_alternative("<p>the html</p>", subtype="html")
    assert summarize(msg.as_bytes()).preview == "the plain text"
    assert not summarize(msg.as_bytes()).hasAttachment
    msg.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="r.pdf")
    s = summarize(msg.as_bytes())
    assert s.hasAttachment and s.preview == "the plain text"


def test_inline_image_of_an_html_body_is_no_attachment():
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg.set_content("<p>see <img src='cid:x'></p>", subtype="html")
    msg.add_related(b"\x89PNG...", maintype="image", subtype="png", cid="<x>")
    s = summarize(msg.as_bytes())
    assert not s.hasAttachment and s.preview == "see"
    text = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nbody\n--b\n"
                "Content-Type: text/plain\nContent-Disposition: attachment; filename=notes.txt\n\nnotes\n--b--\n")
    s = summarize(text)
    assert s.hasAttachment and s.preview == "body"


def test_broken_messages_give_what_can_be_read():
    assert summarize(b"") == Summary()
    assert summarize(b"\r\n\r\n just a body").preview == "just a body"
    s = summarize(b"Subject: x\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\nno parts at all\r\n")
    assert s.subject == "x"
    s = summarize(b"From: <<<@@@>>>, ,,\r\nDate: yesterday\r\nMessage-ID: nonsense\r\n"
                  b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n")
    assert s.sentAt is None and s.messageId is None
    # a truncated base64 part still gives its beginning
    s = summarize(b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29y")
    assert s.preview == "hello wor"


def test_raw_8bit_headers_never_give_surrogates():
    s = summarize(b"Subject: caf\xe9 \xc3\xbc\r\nFrom: \xff <x@example.test>\r\n\r\nbody \xe9\r\n")
    assert s.subject == "caf\ufffd \u00fc" and s.sender == (("\ufffd", "x@example.test"),)
    json.dumps(s.toJson(), ensure_ascii=False).encode("utf-8")


def test_preview_is_capped_and_controls_go():
    s = summarize(b"Subject: a\x01b\r\n\r\n" + b"word\x07 " * 500)
    assert s.subject == "ab"
    assert len(s.preview) == summary.PREVIEW_LENGTH and "\x07" not in s.preview


def test_many_addresses_are_capped():
    data = b"To: " + b", ".join(b"u%d@example.test" % i for i in range(500)) + b"\r\n\r\n"
    assert len(summarize(data).to) == summary.MAX_ADDRESSES


words = st.text(alphabet="abcdefghij\u00e9\u00fc\u00df\u65e5 ", min_size=1, max_size=60)


@FUZZ
@given(words, words, st.sampled_from(["utf-8", "iso-8859-1"]), st.sampled_from(["quoted-printable", "base64", "8bit"]),
       st.booleans(), st.booleans())
def test_built_messages_read_back(subject, body, charset, cte, html, attach):
    if charset == "iso-8859-1":
        body = body.encode("latin-1", "replace").decode("latin-1")
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = subject
    msg["From"] = email.headerregistry.Address(display_name=subject.strip() or "x", addr_spec="a@example.test")
    if html:
        msg.set_content("<div>%s</div>" % body.replace("&", "&amp;").replace("<", "&lt;"), subtype="html",
                        charset=charset, cte=cte)
    else:
        msg.set_content(body, charset=charset, cte=cte)
    if attach:
        msg.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream", filename="f.bin")
    s = summarize(msg.as_bytes())
    assert s.preview == " ".join(body.split())[:summary.PREVIEW_LENGTH]
    assert s.subject == " ".join(subject.split()) or s.subject == subject.strip()
    assert s.sender[0][1] == "a@example.test"
    assert s.hasAttachment == attach


@FUZZ
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_summary(data):
    s = summarize(data)
    assert isinstance(s, Summary) and len(s.preview) <= summary.PREVIEW_LENGTH
    assert Summary.fromJson(s.toJson()) == s
    json.dumps(s.toJson(), ensure_ascii=False).encode("utf-8")  # no lone surrogates: SQLite takes it


@FUZZ
@given(st.lists(st.sampled_from([b"Content-Type: multipart/mixed; boundary=b\r\n", b"--b\r\n", b"--b--\r\n",
                                 b"\r\n", b"Content-Type: text/html\r\n", b"<p>x&amp;</p>\r\n",
                                 b"Content-Transfer-Encoding: base64\r\n", b"aGk=\r\n",
                                 b"Content-Disposition: attachment\r\n", b"=?utf-8?q?=C3?=\r\n",
                                 b"Subject: =?x?b?@@?=\r\n", b"To: a:b@c;\r\n"]), max_size=40))
def test_mime_shaped_noise(pieces):
    s = summarize(b"".join(pieces))
    assert isinstance(s, Summary)


names = st.text(alphabet="abcXYZ \u00e9", max_size=12)
hosts = st.sampled_from(["example.test", "b.c", "x-y.example"])


@FUZZ
@given(st.lists(st.tuples(names, st.text(alphabet="abc.-_1", min_size=1, max_size=8), hosts), min_size=1,
                max_size=5))
def test_simple_address_lists_read_as_the_full_parser_reads_them(items):
    text = ", ".join(("%s <%s@%s>" % (n, l, h)) if n.strip() else "%s@%s" % (l, h) for n, l, h in items)
    fast = summary._simpleAddresses(text)
    full = summary.addresses(("(c) " + text).encode())  # a comment: the full parser
    assert fast is not None
    assert [a for _, a in fast] == [a for _, a in full]
    assert [n for n, _ in fast] == [(" ".join(n.split()) or None) for n, _, _ in items]
