"""
RFC 8621 s5 SearchSnippet/get: for each Email, its subject and a piece of
its body with the matches of the filter's search terms (``text``,
``subject`` for the subject, ``text`` and ``body`` for the preview; not
those under a NOT) between ``<mark>`` and ``</mark>``, the rest
HTML-escaped.  Matching is Email/query's: case-insensitive, on the decoded
subject and the decoded text parts (:mod:`mailnet.jmap.emailquery`).  Pure:
the store is read through :mod:`mailnet.jmap.mailstore`.
"""

from __future__ import annotations

import html
import re

from mailnet.jmap import emailquery, standard
from mailnet.jmap.errors import MethodError
from mailnet.jmap.mailbox import MAIL
from mailnet.mail.mime import TooComplex, mimeText, quickText

PREVIEW_CHARS = 255  # RFC 8621 s5: the preview "SHOULD NOT be more than 255 octets" before markup; characters here
CONTEXT = 60  # characters before the first match
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def terms(node, negated=False, out=None):
    """(subject terms, body terms) of a checked filter tree (emailquery.parseFilter), not under NOT."""
    if out is None:
        out = (set(), set())
    if node is None:
        return out
    op = node[0]
    if op in ("AND", "OR", "NOT"):
        for child in node[1]:
            terms(child, negated or op == "NOT", out)
    elif not negated and node[1]:
        if op in ("text", "subject"):
            out[0].add(node[1])
        if op in ("text", "body"):
            out[1].add(node[1])
    return out


def _pattern(words):
    if not words:
        return None
    # Longest first, so a term inside a longer one does not cut it.
    return re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.IGNORECASE)


def highlight(text, pattern):
    """``text`` HTML-escaped, each match of ``pattern`` in ``<mark>``; None when nothing matches."""
    if pattern is None or not text:
        return None
    out, last, found = [], 0, False
    for m in pattern.finditer(text):
        if m.end() == m.start():
            continue
        found = True
        out.append(html.escape(text[last:m.start()], quote=False))
        out.append("<mark>" + html.escape(m.group(), quote=False) + "</mark>")
        last = m.end()
    if not found:
        return None
    out.append(html.escape(text[last:], quote=False))
    return "".join(out)


def preview(text, pattern):
    """A piece of ``text`` (white space runs as one space) around its first match, highlighted."""
    if pattern is None or not text:
        return None
    first = pattern.search(text)
    if first is None:
        return None
    start = max(0, first.start() - CONTEXT)
    piece = _SPACE.sub(" ", text[start:start + PREVIEW_CHARS * 2]).strip()
    if start:
        piece = piece.split(" ", 1)[-1] if " " in piece[:CONTEXT] else piece  # start at a word
    return highlight(piece[:PREVIEW_CHARS], pattern)


def bodyText(data: bytes) -> str:
    """The decoded text parts of a message (HTML ones as text), as Email/query's body filter sees them."""
    try:
        parts = quickText(data)
    except TooComplex:
        parts = [mimeText(data)]
    out = []
    for part in parts:
        if "<" in part and _TAG.search(part) and re.search(r"(?i)<(html|body|p|div|br|span|table)\b", part):
            part = html.unescape(_TAG.sub(" ", re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", part)))
        out.append(part)
    return "\n".join(out)


async def searchSnippetGet(call):
    """RFC 8621 s5.1."""
    account = call.account()
    args = call.arguments
    filter = emailquery.parseFilter(args.get("filter"))
    ids = standard._ids(call, "emailIds", allowNull=False)
    limit = call.context.limits.maxObjectsInGet
    if len(ids) > limit:
        raise MethodError("requestTooLarge", f"at most {limit} emailIds")
    subjectTerms, bodyTerms = terms(filter.tree)
    subjectPattern, bodyPattern = _pattern(subjectTerms), _pattern(bodyTerms)
    store = account.backend
    reader = emailquery.Reader(store)
    unique = list(dict.fromkeys(ids))
    out = []
    try:
        found = await reader.summaries(unique) if unique else {}
        for emailId in unique:
            summary = found.get(emailId)
            if summary is None:
                continue
            snippet = {"emailId": emailId, "subject": highlight(summary.subject, subjectPattern), "preview": None}
            if bodyPattern is not None:
                c = emailquery.Candidate(summary)
                await reader.loadText(c)
                snippet["preview"] = preview(bodyText(c.text.data), bodyPattern)
            out.append(snippet)
    finally:
        reader.close()
    return {"accountId": account.id, "list": out, "notFound": [i for i in unique if i not in found]}


def register(registry):
    registry.method("SearchSnippet/get", searchSnippetGet, MAIL)
