"""
HTML mail made safe to show, pure (no I/O): nh3 (the Rust ammonia
sanitizer) with an allow-list, then a few rewrites of our own.

This is the first of two layers.  The second is how the result is served
(mailnet/http/webmail.py): its own URL, a CSP with ``default-src 'none'``
and no script source, framed by the app in ``<iframe sandbox="">`` (no
scripts, an opaque origin).  Either layer alone should stop a hostile
message; both together are what mox and the Roundcube CVEs teach
(/work/shared/STYLE.md lesson 14).

What comes out:

- only the tags of :data:`TAGS` (formatting, tables, lists, links,
  images); ``script``, ``style``, ``title``, ``svg``, ``math``, ``iframe``,
  ``object``, ``embed``, ``template``, ``noscript``, ``textarea`` and
  ``select`` are removed with their content; every other tag (``form``,
  ``input``, ``meta``, ``base``, ``link``, ``button``, ...) is removed and
  its text kept;
- only the attributes of :data:`ATTRIBUTES`: no ``on*`` handler, no
  ``srcset``, no ``id``/``name`` (no clobbering, no form targets);
- links only to ``http:``, ``https:`` and ``mailto:`` (no ``javascript:``,
  no ``data:``, no relative URL), opening a new tab with
  ``rel="noopener noreferrer"``;
- images: ``cid:`` ones (RFC 2392) replaced by a ``data:`` URI of the
  message's own part through the ``images`` callback; ``data:`` images
  of a raster type kept; remote (``http:``/``https:``) ones kept only with
  ``remote=True``, else moved to ``data-remote-src`` and counted; the
  ``background`` attribute the same way; anything else removed;
- ``style`` attributes and ``<style>`` blocks through the CSS allow-list
  of mailnet/http/sanitizecss.py (properties, no ``url()``, no
  ``@import``, no ``position: fixed``...); the blocks' rules are scoped to
  the element holding the message and put in the frame document's head
  (:attr:`Cleaned.css`).
"""

from __future__ import annotations

import base64
import dataclasses
import html.parser
import re
import urllib.parse

import nh3

from mailnet.http.sanitizecss import SCOPE, cleanStyleAttribute, cleanStyleSheet

TAGS = {
    "a", "abbr", "acronym", "address", "article", "aside", "b", "bdi", "bdo", "big", "blockquote", "br", "caption",
    "center", "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt", "em",
    "figcaption", "figure", "font", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "i", "img", "ins",
    "kbd", "li", "mark", "nav", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "section", "small", "span",
    "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt",
    "u", "ul", "var", "wbr",
}

# Removed with everything inside (their content is code or invisible, never text to read).
DROPPED = {"script", "style", "title", "svg", "math", "iframe", "object", "embed", "template", "noscript",
           "textarea", "select", "applet", "frameset", "noembed", "noframes", "xmp", "head"}

ATTRIBUTES = {
    "*": {"style", "class", "dir", "lang", "title", "align", "valign", "width", "height", "bgcolor"},
    "a": {"href"},
    "img": {"src", "alt", "border", "hspace", "vspace"},
    "table": {"border", "cellpadding", "cellspacing", "background"},
    "td": {"colspan", "rowspan", "nowrap", "background", "headers", "abbr"},
    "th": {"colspan", "rowspan", "nowrap", "background", "scope", "headers", "abbr"},
    "col": {"span"}, "colgroup": {"span"},
    "font": {"color", "face", "size"},
    "ol": {"start", "type"}, "ul": {"type"}, "li": {"type"},
    "blockquote": {"cite"}, "q": {"cite"}, "del": {"cite", "datetime"}, "ins": {"cite", "datetime"},
    "time": {"datetime"},
}

LINK_SCHEMES = ("http:", "https:", "mailto:")
RASTER = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif")
_DATA_IMAGE = re.compile(r"data:(image/(?:png|jpeg|gif|webp|bmp|avif));base64,[A-Za-z0-9+/=\s]*\Z", re.I)

# An <img> tag as nh3 writes it: attributes always double-quoted, a raw " never inside a value.
_IMG_TAG = re.compile(r'<img((?:\s+[^\s="<>/]+(?:="[^"]*")?)*)\s*/?>')
_REMOTE_SRC = re.compile(r'(\s)src="(https?:[^"]*)"', re.I)
_REMOTE_BACKGROUND = re.compile(r'(\s)background="(https?:[^"]*)"', re.I)
_ANY_TAG = re.compile(r'<[a-z0-9]+((?:\s+[^\s="<>/]+(?:="[^"]*")?)*)\s*/?>')

# The frame document around the cleaned body.  Its only style is ours, inline (the frame's CSP allows it).
DOCUMENT = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
    "<style>body{margin:8px;font-family:sans-serif;overflow-wrap:anywhere}"
    "img{max-width:100%;height:auto}pre{white-space:pre-wrap}</style>"
    "{css}</head><body><div class=\"" + SCOPE[1:] + "\">\n{body}\n</div></body></html>\n"
)
MAX_STYLE_BLOCKS = 50


@dataclasses.dataclass
class Cleaned:
    """
    @ivar html: the cleaned fragment (the body's content).
    @ivar remote: how many remote resources were blocked (images and
        backgrounds that ``remote=True`` would show).
    @ivar inlined: how many ``cid:`` images became ``data:`` URIs.
    @ivar css: the message's ``<style>`` blocks, cleaned and scoped ("" when none).
    """

    html: str
    remote: int = 0
    inlined: int = 0
    css: str = ""

    def document(self) -> str:
        """A whole HTML document (UTF-8) with the fragment as its body."""
        # sanitizecss never lets "<" through, so the sheet cannot close its <style> element.
        css = f"<style>{self.css}</style>" if self.css else ""
        return DOCUMENT.replace("{css}", css).replace("{body}", self.html)


def cleanStyle(value: str) -> str | None:
    """A ``style`` attribute without anything that fetches or runs; None to drop it."""
    return cleanStyleAttribute(value)


class _StyleBlocks(html.parser.HTMLParser):
    """The text of each ``<style>`` element (the parser reads it as raw text, like a browser)."""

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.blocks, self.inside = [], False

    def handle_starttag(self, tag, attrs):
        self.inside = tag == "style"
        if self.inside:
            self.blocks.append("")

    def handle_endtag(self, tag):
        self.inside = False

    def handle_data(self, data):
        if self.inside and self.blocks:
            self.blocks[-1] += data


def styleSheet(html_: str) -> str:
    """The ``<style>`` blocks of a message, cleaned and scoped (mailnet/http/sanitizecss.py)."""
    if "<style" not in html_.lower():
        return ""
    parser = _StyleBlocks()
    try:
        parser.feed(html_)
        parser.close()
    except Exception:  # html.parser is lenient; a surprise costs the message its look, nothing else
        return ""
    return "\n".join(filter(None, (cleanStyleSheet(b) for b in parser.blocks[:MAX_STYLE_BLOCKS])))


def dataImage(contentType: str, data: bytes) -> str:
    return f"data:{contentType};base64," + base64.b64encode(data).decode("ascii")


def _scheme(url: str) -> str:
    # Browsers drop ASCII whitespace and control characters inside a URL's scheme ("java\tscript:").
    squeezed = re.sub(r"[\x00-\x20\x7f]+", "", url).lower()
    return squeezed.split(":", 1)[0] + ":" if ":" in squeezed else ""


def clean(html: str, images=None, remote: bool = False) -> Cleaned:
    """
    Clean one HTML body part.

    @param images: ``f(contentId) -> (contentType, bytes) | None``: the
        message's part with that Content-ID (RFC 2392, without ``<>``), or
        None when there is none or it is too large.
    @param remote: keep remote images (the user asked for them).
    """
    result = Cleaned("")

    def filterAttribute(tag, name, value):
        if name == "style":
            return cleanStyle(value)
        if name == "href":
            return value if _scheme(value) in LINK_SCHEMES else None
        if name == "src" and tag == "img":
            scheme = _scheme(value)
            if scheme == "cid:":
                found = images(_unquoteCid(value.strip()[4:])) if images is not None else None
                if found is None or found[0].lower() not in RASTER:
                    return None
                result.inlined += 1
                return dataImage(found[0].lower(), found[1])
            if scheme == "data:":
                return value if _DATA_IMAGE.match(value.strip()) else None
            if scheme in ("http:", "https:"):
                return value.strip()  # moved to data-remote-src below unless remote
            return None
        if name == "background":
            return value.strip() if _scheme(value) in ("http:", "https:") else None
        if name == "cite":  # a URL never fetched; kept only when it is an ordinary one
            return value if _scheme(value) in ("http:", "https:") else None
        return value

    cleaned = nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=DROPPED,
        attributes=ATTRIBUTES,
        attribute_filter=filterAttribute,
        strip_comments=True,
        link_rel="noopener noreferrer",
        url_schemes={"http", "https", "mailto", "cid", "data"},
        url_relative="deny",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    if not remote:
        cleaned, count = _blockRemote(cleaned)
        result.remote = count
    result.html = cleaned
    result.css = styleSheet(html)
    return result


def _unquoteCid(value: str) -> str:
    # RFC 2392 s2: the cid URL is the Content-ID, URL-encoded, without the angle brackets.
    return urllib.parse.unquote(value).strip().strip("<>")


def _blockRemote(cleaned: str) -> tuple[str, int]:
    """Move remote ``src``/``background`` values to ``data-remote-src`` (count them)."""
    count = 0

    def image(match):
        nonlocal count
        tag = match.group(0)
        new, n = _REMOTE_SRC.subn(r'\1data-remote-src="\2"', tag)
        count += n
        return new

    def background(match):
        nonlocal count
        tag = match.group(0)
        new, n = _REMOTE_BACKGROUND.subn(r'\1data-remote-src="\2"', tag)
        count += n
        return new

    cleaned = _IMG_TAG.sub(image, cleaned)
    cleaned = _ANY_TAG.sub(background, cleaned)
    return cleaned, count
