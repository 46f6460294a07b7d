"""
The CSS of HTML mail made safe to show, pure (no I/O): the ``<style>``
blocks of a message and its ``style`` attributes, reduced to an
allow-list of properties whose values fetch nothing and run nothing.

Used by mailnet/http/sanitize.py.  The result is shown only inside the
message's sandboxed frame (its own document, CSP ``default-src 'none'``),
so a rule can at worst change how the message itself looks; still, every
rule of a ``<style>`` block is scoped to the element holding the message
(``.mailnet-message``), so it cannot restyle the frame's own parts.

What a style sheet keeps:

- style rules whose selectors use only ordinary characters (names,
  classes, ids, attribute tests, combinators, pseudo-classes; no
  backslash, no ``@``, no braces), each selector prefixed with the scope
  (``html``, ``body`` and ``:root`` become the scope itself);
- ``@media`` blocks (one level) with their rules cleaned the same way;
- nothing else: ``@import``, ``@font-face``, ``@namespace``,
  ``@keyframes``, ``@supports``, ``@page``... are dropped with their
  content.

What a declaration keeps (both places): a property of :data:`PROPERTIES`,
a value without ``url()``, ``image-set()``, ``image()``, ``src()``,
``expression()``, ``attr()``, ``var()``, ``env()``, ``@``, ``javascript:``,
``behavior`` or ``-moz-binding``; ``position`` only ``static``,
``relative`` or ``absolute`` (no ``fixed`` or ``sticky`` overlays).

A backslash (CSS escapes: ``u\\rl(``), a ``<`` (``</style>``) or a quoted
string with anything but letters, digits, spaces and ``,._-`` anywhere in
a style sheet drops the whole sheet: not worth untangling.
"""

from __future__ import annotations

import re

SCOPE = ".mailnet-message"

PROPERTIES = frozenset("""
color background-color background opacity visibility
font font-family font-size font-style font-weight font-variant line-height letter-spacing word-spacing
text-align text-decoration text-decoration-color text-decoration-line text-decoration-style text-indent
text-transform text-shadow white-space word-break word-wrap overflow-wrap vertical-align direction
margin margin-top margin-right margin-bottom margin-left
padding padding-top padding-right padding-bottom padding-left
border border-top border-right border-bottom border-left border-color border-style border-width
border-top-color border-right-color border-bottom-color border-left-color
border-top-style border-right-style border-bottom-style border-left-style
border-top-width border-right-width border-bottom-width border-left-width
border-radius border-top-left-radius border-top-right-radius border-bottom-left-radius border-bottom-right-radius
border-collapse border-spacing table-layout caption-side empty-cells
width height min-width min-height max-width max-height box-sizing box-shadow
display float clear overflow overflow-x overflow-y
position top right bottom left z-index
list-style list-style-type list-style-position
outline outline-color outline-style outline-width
""".split())

POSITIONS = frozenset({"static", "relative", "absolute"})

# Anything that fetches, runs, or reads a value from elsewhere (CSS Values 4 url(), image-set(), attr(), var()...).
_FORBIDDEN_VALUE = re.compile(r"url\s*\(|image-set\s*\(|image\s*\(|src\s*\(|expression\s*\(|attr\s*\(|var\s*\("
                              r"|env\s*\(|@|javascript:|behavior|-moz-binding|[{}<>\\]", re.I)
_PROPERTY = re.compile(r"[a-z-]{1,40}\Z")
_COMMENT = re.compile(r"/\*.*?(\*/|\Z)", re.S)
_STRING = re.compile(r"""(["'])(.*?)(\1|\Z)""", re.S)
_SAFE_STRING = re.compile(r"[A-Za-z0-9 ,._-]*\Z")
_SELECTOR = re.compile(r"""[A-Za-z0-9_\-.#:>+~*\[\]="'|^$() ,]+\Z""")
_MEDIA = re.compile(r"@media\s+([A-Za-z0-9 (),:._-]{1,200})\Z", re.I)
_ROOT = re.compile(r"^(?::root|html|body)(?=$|[\s.#:\[>+~])", re.I)
MAX_SHEET = 256 * 1024


def cleanDeclarations(text: str) -> list[str]:
    """``prop: value; ...`` -> the kept ``prop: value`` strings."""
    kept = []
    for declaration in text.split(";"):
        name, colon, value = declaration.partition(":")
        name, value = name.strip().lower(), " ".join(value.split())
        if not colon or not value or not _PROPERTY.match(name) or name not in PROPERTIES:
            continue
        if _FORBIDDEN_VALUE.search(value):
            continue
        if name == "position" and value.lower().replace("!important", "").strip() not in POSITIONS:
            continue
        kept.append(f"{name}: {value}")
    return kept


def cleanStyleAttribute(value: str) -> str | None:
    """A ``style`` attribute cleaned; None to drop it."""
    if "\\" in value or "<" in value or "&" in value:
        return None  # CSS escapes (u\rl) or entity tricks: not worth untangling
    return "; ".join(cleanDeclarations(_COMMENT.sub(" ", value))) or None


def _scoped(selectors: str, scope: str) -> str | None:
    out = []
    for selector in selectors.split(","):
        selector = " ".join(selector.split())
        if not selector:
            return None
        if _ROOT.match(selector):
            selector = _ROOT.sub(scope, selector, count=1)
        else:
            selector = f"{scope} {selector}"
        out.append(selector)
    return ", ".join(out)


def _blocks(css: str):
    """Top-level items: ``(prelude, body)`` for ``x { ... }``, ``(prelude, None)`` for ``@x ...;``."""
    i, n = 0, len(css)
    while i < n:
        j = i
        while j < n and css[j] not in "{;}":
            j += 1
        prelude = css[i:j].strip()
        if j >= n:
            return
        if css[j] == ";" or css[j] == "}":
            if prelude:
                yield prelude, None
            i = j + 1
            continue
        depth, k = 1, j + 1
        while k < n and depth:
            depth += {"{": 1, "}": -1}.get(css[k], 0)
            k += 1
        yield prelude, css[j + 1:k - 1] if not depth else css[j + 1:k]
        i = k


def _rules(css: str, scope: str, media: bool) -> list[str]:
    out = []
    for prelude, body in _blocks(css):
        if body is None:
            continue  # @import, @charset, @namespace: dropped
        if prelude.startswith("@"):
            found = _MEDIA.match(prelude)
            if found and media:
                inner = _rules(body, scope, media=False)
                if inner:
                    out.append(f"@media {' '.join(found.group(1).split())} {{ {' '.join(inner)} }}")
            continue  # every other at-rule, and @media inside @media
        if "{" in body or not _SELECTOR.match(prelude):
            continue
        selectors = _scoped(prelude, scope)
        declarations = cleanDeclarations(body)
        if selectors and declarations:
            out.append(f"{selectors} {{ {'; '.join(declarations)} }}")
    return out


def cleanStyleSheet(css: str, scope: str = SCOPE) -> str:
    """The rules of a ``<style>`` block that are safe, scoped; "" when nothing is."""
    if len(css) > MAX_SHEET:
        return ""
    css = _COMMENT.sub(" ", css)
    if "\\" in css or "<" in css:
        return ""
    for found in _STRING.finditer(css):
        if not found.group(3) or not _SAFE_STRING.match(found.group(2)):
            return ""
    return "\n".join(_rules(css, scope, media=True))
