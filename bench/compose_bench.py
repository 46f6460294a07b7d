#!/usr/bin/env python3
"""
Time to build one message with mailnet's MIME builder (mailnet/mail/compose.py,
what JMAP Email/set create uses) against the stdlib's EmailMessage with
policy SMTP (the peer), interleaved in one run: a reply of 90 KB of text
(mostly ASCII with some UTF-8: quoted-printable), its HTML alternative and
a 1 MB attachment (base64), with encoded-word headers.

    /work/main/.venv/bin/python bench/compose_bench.py [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import email.policy
import email.utils
import os
import sys
import time
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mailnet.mail import compose  # noqa: E402

TEXT = "Grüße, this is a line of text in a reply.\n" * 2000
HTML = "<p>" + TEXT.replace("\n", "<br>") + "</p>"
BLOB = os.urandom(1_000_000)


def mailnet():
    root = compose.Part("multipart/mixed", subParts=[
        compose.Part("multipart/alternative", subParts=[
            compose.Part("text/plain", content=TEXT.encode(), charset="utf-8"),
            compose.Part("text/html", content=HTML.encode(), charset="utf-8")]),
        compose.Part("application/pdf", content=BLOB, name="report.pdf", disposition="attachment")])
    return compose.build([compose.addressList("From", [("Jürgen", "j@example.test")]),
                          compose.addressList("To", [("Bob", "b@example.test")]),
                          compose.unstructured("Subject", "Grüße aus Köln"), compose.date("Date", time.time()),
                          compose.messageIdList("Message-ID", [compose.newMessageId("mx.example.test")])], root)


def stdlib():
    m = EmailMessage()
    m["From"] = "Jürgen <j@example.test>"
    m["To"] = "Bob <b@example.test>"
    m["Subject"] = "Grüße aus Köln"
    m["Date"] = email.utils.formatdate(time.time())
    m["Message-ID"] = email.utils.make_msgid()
    m.set_content(TEXT)
    m.add_alternative(HTML, subtype="html")
    m.add_attachment(BLOB, maintype="application", subtype="pdf", filename="report.pdf")
    return m.as_bytes(policy=email.policy.SMTP)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for n in range(args.rounds):
        times = {}
        for name, build in (("mailnet compose", mailnet), ("stdlib EmailMessage", stdlib)):
            start, count = time.perf_counter(), 0
            while time.perf_counter() - start < args.seconds:
                size = len(build())
                count += 1
            times[name] = (time.perf_counter() - start) / count
            print(f"round {n}: {name}: {times[name] * 1000:.1f} ms per message of {size} bytes")
        print(f"round {n}: stdlib / mailnet = {times['stdlib EmailMessage'] / times['mailnet compose']:.2f}")


if __name__ == "__main__":
    main()
