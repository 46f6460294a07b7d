"""
Delivery status notifications (RFC 3464), built with the stdlib ``email``
package.  Pure: everything it needs is passed in, it returns bytes.

A DSN is a ``multipart/report; report-type=delivery-status`` (RFC 6522)
with three parts:

1. a human-readable explanation (text/plain);
2. ``message/delivery-status``: one block of per-message fields
   (Original-Envelope-Id, Reporting-MTA, Received-From-MTA, Arrival-Date)
   and one block per recipient (Original-Recipient, Final-Recipient,
   Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date,
   Will-Retry-Until);
3. the original message (``message/rfc822``) for a failure when RET=FULL or
   no RET was given, else only its header (``text/rfc822-headers``), as
   RFC 3461 s4.3 allows; delay and success reports always carry only the
   header.  What is returned is limited to ``returnLimit`` bytes
   (``[queue] bounce_size_limit``, Postfix's ``bounce_size_limit``): a
   larger message is returned as its header only, and a header larger than
   that is cut after its last whole line within the limit (the human part
   says which).  So a report is never much larger than the limit, whoever
   asked for it (RFC 3461 s6.3 warns that DSNs can be abused).

The DSN is sent from the null reverse-path (RFC 3461 s6.2, RFC 5321 s4.5.5)
by the caller; this module only makes the message.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.policy
import email.utils
import secrets
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from io import BytesIO

from mailnet.mail.codecs import decodeXtext
from mailnet.mail.lines import toCRLF

RETURN_LIMIT = 50_000  # bytes of the original returned: Postfix's bounce_size_limit default

FAILED = "failed"
DELAYED = "delayed"
DELIVERED = "delivered"
RELAYED = "relayed"
EXPANDED = "expanded"

SUBJECTS = {
    "failure": "Undelivered Mail Returned to Sender",
    "delay": "Delayed Mail (still being retried)",
    "success": "Successful Mail Delivery Report",
}


@dataclasses.dataclass
class RecipientReport:
    """
    One recipient's block (RFC 3464 s2.3).

    @ivar address: the final recipient (the RCPT TO address we worked on).
    @ivar orcpt: the ORCPT parameter as received (``"rfc822;bob+40x"`` in
        xtext), or None.
    @ivar action: failed, delayed, delivered, relayed or expanded.
    @ivar status: RFC 3463 code, e.g. ``"5.1.1"``.
    @ivar diagnostic: the reply or error text, e.g. ``"550 5.1.1 no such user"``.
    @ivar remote: the remote MTA that gave ``diagnostic``; None when the
        diagnostic is ours (then Diagnostic-Code is ``X-mailnet``).
    @ivar lastAttempt: epoch time of the last attempt, or None.
    @ivar willRetryUntil: epoch time (delayed reports only), or None.
    """

    address: str
    action: str
    status: str
    diagnostic: str | None = None
    remote: str | None = None
    orcpt: str | None = None
    lastAttempt: float | None = None
    willRetryUntil: float | None = None


def _ascii(text: str) -> str:
    """Delivery-status fields are ASCII text; replace anything else."""
    text = " ".join(str(text).split())
    return text.encode("ascii", "replace").decode("ascii")


def _date(epoch: float) -> str:
    # RFC 5322 s3.3: "+0000" is UTC; "-0000" would mean "zone unknown".
    return email.utils.format_datetime(datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc))


def _addressType(address: str) -> str:
    # RFC 6533 s3: non-ASCII addresses use the "utf-8" address type.
    return "rfc822" if address.isascii() else "utf-8"


def _typed(value: str) -> str:
    """``"rfc822;bob@x"`` (as in ORCPT) -> ``"rfc822; bob@x"``."""
    kind, sep, address = value.partition(";")
    if not sep:
        return f"rfc822; {decodeXtext(value, strict=False)}"
    return f"{kind.strip()}; {decodeXtext(address.strip(), strict=False)}"


def _block(policy, fields) -> Message:
    block = Message(policy=policy)
    for name, value in fields:
        if value is not None:
            block[name] = value
    return block


def splitHeader(data: bytes) -> bytes:
    """
    The header section of a message: its header lines, each ending in CRLF,
    without the blank line that separates them from the body.
    """
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = data.find(sep)
        if at >= 0:
            return data[: at + len(sep) // 2]
    return data if data.endswith(b"\n") else data + b"\r\n"


def headerWithin(data: bytes, limit: int) -> tuple[bytes, bool]:
    """
    The header section of ``data`` (which may be only the message's first
    bytes), cut after its last whole line within ``limit`` bytes.

    @return: ``(header, cut)``.
    """
    header = splitHeader(data)
    if len(header) <= limit:
        return header, False
    at = header.rfind(b"\n", 0, limit)
    return header[: at + 1] if at >= 0 else b"", True


def humanText(kind, host, reports, returned, truncated, headerCut=False, limit=RETURN_LIMIT) -> str:
    lines = [f"This is the mail system at {host}.", ""]
    if kind == "failure":
        lines += [
            "Your message could not be delivered to one or more recipients.",
            "The details are below; " + (
                "the message is attached." if returned == "full" else "the message's header is attached."),
        ]
    elif kind == "delay":
        lines += [
            "Your message has not been delivered yet to the recipients below.",
            "This is only a warning: the mail system will keep trying, and you",
            "need not send the message again.",
        ]
    else:
        lines += ["Your message was delivered to the recipients below."]
    if truncated:
        lines += ["", f"(The message is larger than {limit} bytes, too large to return whole;",
                  "only its header is attached.)"]
    if headerCut:
        lines += ["", f"(The message's header is larger than {limit} bytes; only its first",
                  f"{limit} bytes or less, in whole lines, are attached.)"]
    lines.append("")
    for r in reports:
        where = f"host {r.remote} said: " if r.remote else ""
        lines.append(f"<{r.address}>: {where}{r.diagnostic or r.action}")
    return "\n".join(lines) + "\n"


def build(kind: str, envelope: dict, reports: list[RecipientReport], original: bytes | None, *,
          reportingMTA: str, date: float, messageId: str, boundary: str | None = None,
          returnLimit: int = RETURN_LIMIT) -> bytes:
    """
    Make a DSN.

    @param kind: ``"failure"``, ``"delay"`` or ``"success"`` (the subject and
        the explanation; each report carries its own Action).
    @param envelope: the queue item's envelope (sender, envid, ret, arrival,
        client, id, smtputf8).
    @param reports: the recipients to report on.
    @param original: the original message (CRLF), or its header section, or
        its first ``returnLimit + 1`` bytes (enough to decide), or None if
        unavailable.
    @param reportingMTA: our host name (Reporting-MTA, the From address).
    @param date: epoch time for the Date field.
    @param messageId: ``"<...@host>"``.
    @param boundary: the MIME boundary (tests fix it; random when None).
    @param returnLimit: at most this many bytes of the original go in.
    @return: the message, CRLF line ends, ready for the spool.
    """
    utf8 = bool(envelope.get("smtputf8")) or not envelope["sender"].isascii()
    # Lines up to RFC 5322's hard limit, so that a long Diagnostic-Code stays
    # on one line as receivers' parsers expect; the original's header lines
    # are kept as they came (refold_source="none").
    policy = (email.policy.SMTPUTF8 if utf8 else email.policy.SMTP).clone(refold_source="none", max_line_length=998)

    msg = EmailMessage(policy=policy)
    msg["From"] = f"Mail Delivery System <MAILER-DAEMON@{reportingMTA}>"
    msg["To"] = f"<{envelope['sender']}>"
    msg["Subject"] = SUBJECTS[kind]
    msg["Date"] = _date(date)
    msg["Message-ID"] = messageId
    # RFC 3834 s5: automatic responses say so, which stops auto-responders.
    msg["Auto-Submitted"] = "auto-replied"
    msg["MIME-Version"] = "1.0"

    ret = (envelope.get("ret") or "FULL").upper()
    returned = "headers"
    truncated = False
    headerCut = False
    content = None
    if original is not None:
        if kind == "failure" and ret == "FULL":
            if len(original) <= returnLimit:
                returned = "full"
            else:
                truncated = True
        if returned == "full":
            content = original
        else:
            content, headerCut = headerWithin(original, returnLimit)
            content = content or None

    human = EmailMessage(policy=policy)
    human.set_content(humanText(kind, reportingMTA, reports, returned, truncated, headerCut, returnLimit),
                      charset="us-ascii", cte="7bit")
    del human["MIME-Version"]
    human["Content-Description"] = "Notification"

    status = EmailMessage(policy=policy)
    status["Content-Description"] = "Delivery report"
    status["Content-Type"] = "message/delivery-status"
    client = envelope.get("client")
    perMessage = _block(policy, [
        # RFC 3464 s2.2.1: the ENVID, xtext-decoded.
        ("Original-Envelope-Id", _ascii(decodeXtext(envelope["envid"], strict=False)) if envelope.get("envid") else None),
        ("Reporting-MTA", f"dns; {reportingMTA}"),
        ("X-Mailnet-Queue-ID", envelope.get("id")),
        ("Received-From-MTA", f"dns; {_ascii(client)}" if client else None),
        ("Arrival-Date", _date(envelope["arrival"]) if envelope.get("arrival") is not None else None),
    ])
    blocks = [perMessage]
    for r in reports:
        diagnostic = None
        if r.diagnostic:
            diagnostic = f"smtp; {_ascii(r.diagnostic)}" if r.remote else f"X-mailnet; {_ascii(r.diagnostic)}"
        blocks.append(_block(policy, [
            ("Original-Recipient", _ascii(_typed(r.orcpt)) if r.orcpt else None),
            ("Final-Recipient", f"{_addressType(r.address)}; {r.address}"),
            ("Action", r.action),
            ("Status", r.status),
            ("Remote-MTA", f"dns; {r.remote}" if r.remote else None),
            ("Diagnostic-Code", diagnostic),
            ("Last-Attempt-Date", _date(r.lastAttempt) if r.lastAttempt else None),
            ("Will-Retry-Until", _date(r.willRetryUntil) if r.willRetryUntil else None),
        ]))
    status.set_payload(blocks)

    parts = [human, status]
    # The returned message (or header) goes in as it is, byte for byte: the
    # email package would re-generate it (and can fail on odd MIME), so the
    # part holds a placeholder that is replaced after flattening.
    placeholder = None
    if content is not None:
        placeholder = f"@@mailnet-original-{secrets.token_hex(16)}@@"
        part = EmailMessage(policy=policy)
        if returned == "full":
            part["Content-Description"] = "Undelivered Message"
            part["Content-Type"] = "message/rfc822"
        else:
            part["Content-Description"] = "Message Headers"
            part["Content-Type"] = "text/rfc822-headers"
        if any(b > 127 for b in content):
            # RFC 2046 s5.2.1: message/rfc822 is 7bit, 8bit or binary; say which.
            part["Content-Transfer-Encoding"] = "8bit"
        part.set_payload(placeholder)
        parts.append(part)

    msg["Content-Type"] = "multipart/report; report-type=delivery-status"
    msg.set_payload(parts)
    chosen = boundary or f"{envelope.get('id', 'dsn')}/{secrets.token_hex(8)}"
    while content is not None and b"--" + chosen.encode() in content:
        # RFC 2046 s5.1.1: the boundary must not occur in the encapsulated text.
        chosen = f"{chosen}/{secrets.token_hex(4)}"
    msg.set_boundary(chosen)

    out = BytesIO()
    BytesGenerator(out, policy=policy, mangle_from_=False).flatten(msg)
    data = out.getvalue()
    if placeholder is not None:
        if not content.endswith(b"\n"):
            content += b"\r\n"
        # The content keeps its last line end; the generator adds the CRLF
        # that belongs to the next boundary line (RFC 2046 s5.1.1).
        data = data.replace(placeholder.encode("ascii"), content, 1)
    # SMTP wants CRLF everywhere; an original stored with bare LFs is fixed here.
    return toCRLF(data)
