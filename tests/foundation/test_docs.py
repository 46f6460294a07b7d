"""The documentation a user gets stays inside the repository: no link (or
path) into the developers' machine, another repository or the web."""

import glob
import os
import re

from tests.harness import ROOT

URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s)>`\"']+", re.I)
LOOPBACK = re.compile(r"[a-z][a-z0-9+.-]*://([^/@]*@)?(127\.0\.0\.1|localhost|\[::1\])([:/]|$)", re.I)
MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
# a relative path that climbs out of its directory, or a developer machine's path
PATHLIKE = re.compile(r"(?<![\w./-])(\.\./[\w./-]+|/work/[\w./-]*)")


def documents():
    files = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    assert len(files) > 5
    return files


def problems(text, here, name):
    """What is wrong with the links of ``text``, a page in directory ``here``."""
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines, 1):
        for url in URL.findall(line):
            if not LOOPBACK.match(url):  # an example against your own server
                found.append((number, url, "points outside the repository"))
    targets = MARKDOWN_LINK.findall(text) + REFERENCE_LINK.findall(text) + PATHLIKE.findall(text)
    for target in dict.fromkeys(targets):
        if URL.match(target) or target.startswith(("#", "mailto:")):
            continue
        resolved = os.path.normpath(os.path.join(here, target.split("#")[0]))
        number = next(n for n, line in enumerate(lines, 1) if target in line)
        if os.path.commonpath([resolved, ROOT]) != ROOT:
            found.append((number, target, "points outside the repository"))
        elif not os.path.exists(resolved):
            found.append((number, target, "does not exist in the repository"))
    return [f"{name}:{n}: {target} {why}" for n, target, why in found]


def test_documentation_links_stay_inside_the_repository():
    found = []
    for path in documents():
        with open(path, encoding="utf-8") as f:
            found += problems(f.read(), os.path.dirname(path), os.path.relpath(path, ROOT))
    assert found == []


def test_the_checker_sees_each_kind_of_link():
    sample = ("See [style](../../shared/STYLE.md), `../shared/STYLE.md`, `/work/shared/bench/x`,\n"
              "<https://example.com/a>, `curl imaps://127.0.0.1:2993/INBOX`, [ok](design.md), [gone](nothere.md), [top](../README.md).\n")
    assert problems(sample, os.path.join(ROOT, "docs"), "docs/probe.md") == [
        "docs/probe.md:2: https://example.com/a points outside the repository",
        "docs/probe.md:1: ../../shared/STYLE.md points outside the repository",
        "docs/probe.md:2: nothere.md does not exist in the repository",
        "docs/probe.md:1: ../shared/STYLE.md does not exist in the repository",
        "docs/probe.md:1: /work/shared/bench/x points outside the repository",
    ]
