"""
HTML written in the webmail made ready to send, pure (no I/O): cleaned
with nh3 for the outgoing message (mailnet/http/sanitize.py's allow-list,
remote images kept as written) and turned into the text/plain
alternative (RFC 2046 s5.1.4: the same content, plainer).

The text: paragraphs, headings, list items and table rows on their own
lines, ``- `` before an item of a bulleted list and ``1. `` of a numbered
one, ``> `` before each line of a quote (RFC 3676 quoting, nested), a
link as ``text <url>`` when its text is not the URL itself, whitespace
collapsed except inside ``<pre>``.
"""

from __future__ import annotations

import html.parser
import re

import nh3

from mailnet.http import sanitize

BLOCKS = frozenset({"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "pre", "table",
                    "tr", "hr", "address", "article", "aside", "section", "header", "footer", "nav", "figure",
                    "figcaption", "dl", "dt", "dd", "details", "summary", "center"})


def cleanOutgoing(source: str) -> str:
    """The user's HTML with the tags, attributes and URLs of sanitize.py only (no script, no handler, no form)."""

    def filterAttribute(tag, name, value):
        if name == "style":
            return sanitize.cleanStyle(value)
        if name == "href":
            return value if sanitize._scheme(value) in sanitize.LINK_SCHEMES else None
        if name == "src" and tag == "img":
            scheme = sanitize._scheme(value)
            if scheme == "data:":
                return value if sanitize._DATA_IMAGE.match(value.strip()) else None
            return value.strip() if scheme in ("http:", "https:") else None
        if name in ("background", "cite"):
            return value if sanitize._scheme(value) in ("http:", "https:") else None
        return value

    return nh3.clean(source, tags=sanitize.TAGS, clean_content_tags=sanitize.DROPPED, attributes=sanitize.ATTRIBUTES,
                     attribute_filter=filterAttribute, strip_comments=True, link_rel="noopener noreferrer",
                     url_schemes={"http", "https", "mailto", "data"}, url_relative="deny")


class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines = []       # finished lines
        self.line = ""        # the line being written (without its quote prefix)
        self.quote = 0
        self.lists = []       # [kind, counter] of the open lists
        self.pre = 0
        self.links = []       # [href, text so far] of the open links

    def _prefix(self):
        return ">" * self.quote + " " if self.quote else ""

    def _break(self):
        if self.line.strip():
            line = self.line.rstrip()
            # RFC 3676 s4.3: the signature separator keeps its space.
            self.lines.append(self._prefix() + ("-- " if line == "--" else line))
        self.line = ""

    def handle_starttag(self, tag, attrs):
        if tag == "br":
            self.lines.append((self._prefix() + self.line.rstrip()) if self.line.strip() else ">" * self.quote)
            self.line = ""
            return
        if tag in BLOCKS:
            self._break()
        if tag == "blockquote":
            self.quote += 1
        elif tag in ("ul", "ol"):
            self.lists.append([tag, 0])
        elif tag == "li":
            if self.lists and self.lists[-1][0] == "ol":
                self.lists[-1][1] += 1
                self.line = "   " * (len(self.lists) - 1) + f"{self.lists[-1][1]}. "
            else:
                self.line = "   " * max(len(self.lists) - 1, 0) + "- "
        elif tag == "pre":
            self.pre += 1
        elif tag == "hr":
            self.lines.append(self._prefix() + "-" * 20)
        elif tag == "a":
            self.links.append([dict(attrs).get("href") or "", ""])
        elif tag in ("td", "th") and self.line.strip():
            self.line += "\t"

    def handle_endtag(self, tag):
        if tag in BLOCKS:
            self._break()
        if tag == "blockquote" and self.quote:
            self.quote -= 1
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag == "pre" and self.pre:
            self.pre -= 1
        elif tag == "a" and self.links:
            href, text = self.links.pop()
            shown = href[7:] if href.startswith("mailto:") else href
            if href and text.strip() != shown and text.strip() != href:
                self.line += f" <{shown}>"

    def handle_data(self, data):
        if self.pre:
            parts = data.split("\n")
            for part in parts[:-1]:
                self.line += part
                self.lines.append(self._prefix() + self.line)
                self.line = ""
            self.line += parts[-1]
        else:
            data = re.sub(r"\s+", " ", data)
            if not self.line.strip() and not self.line.endswith(("- ", ". ")):
                data = data.lstrip()
            self.line += data
        for link in self.links:
            link[1] += data


def toText(cleaned: str) -> str:
    """The text/plain alternative of (cleaned) HTML."""
    parser = _Text()
    parser.feed(cleaned)
    parser.close()
    parser._break()
    lines = parser.lines
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""
