"""
FETCH lines of index data (mailnet.imap.commands.fetchlines): the closures
give byte for byte what the former generated code gave (kept below, in
this test only), for every order of up to four items, with and without
\\Recent; and no IMAP module runs generated code.
"""

import ast
import itertools
import pathlib

import pytest

import mailnet.imap
from mailnet.imap import serialize
from mailnet.imap.commands.fetchlines import LINE_ITEMS, lineMaker
from mailnet.store.interfaces import MessageInfo

# The former implementation (mailnet/imap/session.py before issue 11): a
# lambda compiled from the templates per (names, recent).
_OLD_ITEMS = {
    "UID": (b"UID %d", "i.uid"),
    "FLAGS": (b"FLAGS %s", "F[i.flags]"),
    "INTERNALDATE": (b"INTERNALDATE %s", "D(i.internalDate)"),
    "RFC822.SIZE": (b"RFC822.SIZE %d", "i.size"),
    "MODSEQ": (b"MODSEQ (%d)", "i.modseq"),
    "SAVEDATE": (b"SAVEDATE NIL", None),
    "EMAILID": (b"EMAILID NIL", None),
    "THREADID": (b"THREADID NIL", None),
}
_oldCode = {}
_RECENT = frozenset({"\\Recent"})


def oldLineMaker(names, recent=None):
    key = (names, bool(recent))
    code = _oldCode.get(key)
    if code is None:
        template = []
        exprs = []
        for name in names:
            text, expr = _OLD_ITEMS[name]
            template.append(text)
            if expr:
                exprs.append(expr.replace("F[i.flags]", "R(i)") if recent else expr)
        fmt = b"* %d FETCH (" + b" ".join(template) + b")\r\n"
        source = "lambda msn, i: %r %% (msn, %s)" % (fmt, "".join(e + ", " for e in exprs))
        code = _oldCode[key] = compile(source, "<fetch line>", "eval")
    flags = serialize.flags
    namespace = {"D": serialize.internalDate, "F": serialize.FLAGS}
    if recent:
        def R(i):
            return flags(i.flags | _RECENT) if i.uid in recent else flags(i.flags)

        namespace["R"] = R
    return eval(code, namespace)  # noqa: S307 - the reference, in this test only


INFOS = [
    MessageInfo(uid=1, flags=frozenset(), internalDate=0.0, size=0, modseq=1),
    MessageInfo(uid=7, flags=frozenset({"\\Seen", "$Label"}), internalDate=1700000000.75, size=1234, modseq=42),
    MessageInfo(uid=4294967295, flags=frozenset({"\\Deleted", "\\Flagged", "\\Answered", "\\Draft", "\\Seen"}),
                internalDate=951782400.0, size=35 * 1024 * 1024, modseq=2 ** 63 - 1),
]


def nameTuples():
    for n in range(0, 5):
        yield from itertools.product(sorted(LINE_ITEMS), repeat=n)


def test_the_items_are_the_former_ones():
    assert set(LINE_ITEMS) == set(_OLD_ITEMS)


@pytest.mark.parametrize("recent", [None, set(), {7}, {1, 7, 4294967295}], ids=["none", "empty", "one", "all"])
def test_every_order_of_up_to_four_items_gives_the_former_lines(recent):
    count = 0
    for names in nameTuples():
        new = lineMaker(names, recent)
        old = oldLineMaker(names, recent)
        for msn, info in enumerate(INFOS, 1):
            assert new(msn, info) == old(msn, info), (names, recent, info)
        count += 1
    assert count == 1 + 8 + 8 ** 2 + 8 ** 3 + 8 ** 4


def test_no_imap_module_runs_generated_code():
    """No call of the builtins eval, exec or compile (re.compile is fine) in mailnet/imap."""
    root = pathlib.Path(mailnet.imap.__file__).parent
    calls = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec", "compile"):
                calls.append("%s:%d %s" % (path.relative_to(root), node.lineno, node.func.id))
    assert calls == []
