"""
The hostile corpus (tests/http/hostile/) as one message: a multipart/related
whose text/html part is every corpus file plus a cid: image and a remote
tracker, next to the image part; the Subject and From carry markup.  Used
by the real-server tests and the browser test (tests/webmail/).
"""

import base64
import pathlib

HOSTILE = pathlib.Path(__file__).parent / "hostile"
# A 1x1 transparent PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg==")
SUBJECT = '<script>console.log("script executed")</script><b>markup</b> subject'
REMOTE_COUNT = 4  # the remote images and backgrounds of the corpus that remote=1 would show


def hostileHTML() -> str:
    parts = [p.read_text() for p in sorted(HOSTILE.glob("*.html"))]
    parts.append('<p>inline image: <img src="cid:logo.1@example.test" alt="logo"></p>')
    return "\n".join(parts)


def hostileMessage(to="alice@example.test", marker="") -> bytes:
    html = base64.encodebytes(hostileHTML().encode("utf-8")).decode("ascii")
    png = base64.encodebytes(PNG).decode("ascii")
    text = f"""From: "<img src=x onerror=alert(1)>" <attacker@evil.example>
To: {to}
Subject: {SUBJECT}{marker}
Date: Thu, 03 Dec 2026 12:00:00 +0000
Message-ID: <hostile{marker}@evil.example>
MIME-Version: 1.0
Content-Type: multipart/related; boundary="b1"

--b1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

{html}
--b1
Content-Type: image/png
Content-ID: <logo.1@example.test>
Content-Disposition: inline; filename="logo.png"
Content-Transfer-Encoding: base64

{png}
--b1--
"""
    return text.replace("\n", "\r\n").encode("utf-8")
