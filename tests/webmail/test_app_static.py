"""
The app's files themselves (no browser): nothing that could turn mail into
markup or run strings as code, no inline script or style in the page (the
CSP forbids them), nothing fetched from elsewhere, every import resolvable.
"""

import os
import re

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "mailnet", "http", "static", "webmail")


def files(ext):
    for base, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(ext):
                path = os.path.join(base, name)
                yield os.path.relpath(path, ROOT), open(path, encoding="utf-8").read()


def code(text):
    """The text without // comments (the rules below are about code)."""
    return "\n".join(re.sub(r"(^|\s)//.*$", "", line) for line in text.splitlines())


def test_no_markup_sinks_and_no_string_evaluation():
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setTimeout\(\s*[\"'`]")
    for name, text in files(".js"):
        found = sinks.findall(code(text))
        assert not found, f"{name}: {found}"


def test_page_has_no_inline_script_or_style():
    (_, page), = [f for f in files(".html") if f[0] == "index.html"]
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline script"
    assert not re.search(r"\sstyle=", page), "style attribute"
    assert not re.search(r"\son[a-z]+=", page), "event handler attribute"
    assert "<style" not in page


def test_nothing_from_elsewhere():
    # Every URL the app loads is its own: no scheme://host in src/href/import/url() outside comments.
    outside = re.compile(r"""(?:src|href)=["']https?://|import[^;]*["']https?://|url\(\s*["']?https?://|@import""")
    for ext in (".html", ".css", ".js"):
        for name, text in files(ext):
            assert not outside.search(code(text) if ext == ".js" else text), name


def test_every_import_exists():
    for name, text in files(".js"):
        for target in re.findall(r"""^import[^;]*from\s+["'](\./[^"']+)["']""", text, re.M):
            path = os.path.normpath(os.path.join(ROOT, os.path.dirname(name), target))
            assert os.path.exists(path), f"{name} imports {target}"
