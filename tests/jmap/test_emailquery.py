"""RFC 8621 s4.4 Email/query filters and sorts, s4.5 Email/queryChanges, in-process over the memory store."""

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.jmap.mailhelp import USER, MailSession

# The corpus: (subject, from, to, cc, bcc, body, x-tag, flags, folder, date, attachment, reply-to-index)
ROWS = [
    ("Lunch plans", ("Bob Smith", "bob@example.test"), ("Alice", USER), None, None,
     "Shall we meet at noon?", "blue", ("\\Seen",), "INBOX", 1000, False, None),
    ("Re: Lunch plans", ("Carol", "carol@example.test"), ("Alice", USER), ("Bob Smith", "bob@example.test"), None,
     "Noon is fine, café downstairs.", None, (), "INBOX", 2000, False, 0),
    ("Quarterly report", ("Dave", "dave@corp.test"), ("Alice", USER), None, ("Eve", "eve@corp.test"),
     "The numbers are in the attachment.", "red", ("\\Flagged",), "INBOX", 3000, True, None),
    ("Ünïcode subject", ("Zoë", "zoe@example.test"), ("Alice", USER), None, None,
     "Grüße aus Köln", "blue", ("\\Seen", "Work"), "Archive", 4000, False, None),
    ("Re: Quarterly report", ("Alice", USER), ("Dave", "dave@corp.test"), None, None,
     "Thanks, received.", None, ("\\Seen",), "Archive", 5000, False, 2),
    ("invoice 42", ("billing", "billing@shop.test"), ("Alice", USER), None, None,
     "Your invoice is attached, total 42 EUR.", "green", (), "INBOX", 6000, True, None),
    ("invoice 7", ("billing", "billing@shop.test"), ("Alice", USER), None, None,
     "Your invoice is attached, total 7 EUR.", None, ("Work",), "INBOX", 7000, False, None),
]
WORDS = ["lunch", "noon", "café", "report", "numbers", "grüße", "köln", "invoice", "eur", "bob", "carol",
         "corp", "eve", "zoë", "alice", "attached", "thanks", "re:", "blue", "zzz", "", "42"]


def _addr(pair):
    name, email = pair
    if name.isascii():
        return f"{name} <{email}>"
    encoded = base64.b64encode(name.encode()).decode()
    return f"=?utf-8?b?{encoded}?= <{email}>"


def build(row, n):
    subject, frm, to, cc, bcc, body, tag, flags, folder, date, attachment, reply = row
    head = [f"From: {_addr(frm)}", f"To: {_addr(to)}"]
    if cc:
        head.append(f"Cc: {_addr(cc)}")
    if bcc:
        head.append(f"Bcc: {_addr(bcc)}")
    subj = subject if subject.isascii() else "=?utf-8?q?" + "".join(
        c if c.isascii() and c.isalnum() else "".join(f"={b:02X}" for b in c.encode()) for c in subject) + "?="
    head += [f"Subject: {subj}", f"Date: Thu, 03 Dec 2026 10:{n:02d}:00 +0000", f"Message-ID: <m{n}@example.test>"]
    if tag:
        head.append(f"X-Tag: {tag}")
    if reply is not None:
        head += [f"In-Reply-To: <m{reply}@example.test>", f"References: <m{reply}@example.test>"]
    head.append("MIME-Version: 1.0")
    qp = "".join(c if c.isascii() else "".join(f"={b:02X}" for b in c.encode()) for c in body)
    if attachment:
        head.append('Content-Type: multipart/mixed; boundary="XX"')
        text = ("--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
                f"\r\n\r\n{qp}\r\n--XX\r\nContent-Type: application/pdf; name=a.pdf\r\n"
                "Content-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                "JVBERi0xLjQK\r\n--XX--\r\n")
    else:
        head += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"]
        text = qp + "\r\n"
    return ("\r\n".join(head) + "\r\n\r\n" + text).encode("ascii")


def corpus():
    s = MailSession()
    s.ok("Mailbox/set", create={"a": {"name": "Archive"}})
    for n, row in enumerate(ROWS):
        s.deliver(build(row, n), folder=row[8], date=row[9], flags=row[7])
    ids = s.ok("Email/query", sort=[{"property": "receivedAt", "isAscending": True}])["ids"]
    s.byRow = dict(zip(ids, range(len(ROWS))))
    s.ids = ids
    got = s.ok("Email/get", ids=ids, properties=["threadId", "size", "mailboxIds"])["list"]
    s.thread = {e["id"]: e["threadId"] for e in got}
    s.size = {e["id"]: e["size"] for e in got}
    s.boxes = s.mailboxes()
    return s


S = corpus()


def rows(ids):
    return [S.byRow[i] for i in ids]


def query(**args):
    return S.ok("Email/query", **args)["ids"]


# The slow reference: RFC 8621 s4.4.1 written out over the corpus rows.

def _text(pair):
    return f"{pair[0]} <{pair[1]}>".casefold() if pair else ""


def _keywords(flags):
    out = set()
    for f in flags:
        out.add({"\\seen": "$seen", "\\flagged": "$flagged"}.get(f.lower(), f.lower()))
    return out


def reference(filter, i):
    if "operator" in filter:
        results = [reference(c, i) for c in filter["conditions"]]
        return {"AND": all, "OR": any, "NOT": lambda r: not any(r)}[filter["operator"]](results)
    subject, frm, to, cc, bcc, body, tag, flags, folder, date, attachment, _ = ROWS[S.byRow[i]]
    kw = _keywords(flags)
    thread = [_keywords(ROWS[S.byRow[j]][7]) for j in S.ids if S.thread[j] == S.thread[i]]
    for key, v in filter.items():
        low = v.casefold() if isinstance(v, str) else v
        ok = {
            "inMailbox": lambda: S.boxes[folder]["id"] == v,
            "inMailboxOtherThan": lambda: S.boxes[folder]["id"] not in v,
            "before": lambda: date < int(v[11:13]) * 3600 + int(v[14:16]) * 60,
            "after": lambda: date >= int(v[11:13]) * 3600 + int(v[14:16]) * 60,
            "minSize": lambda: S.size[i] >= v,
            "maxSize": lambda: S.size[i] < v,
            "hasKeyword": lambda: low in kw,
            "notKeyword": lambda: low not in kw,
            "allInThreadHaveKeyword": lambda: all(low in k for k in thread),
            "someInThreadHaveKeyword": lambda: any(low in k for k in thread),
            "noneInThreadHaveKeyword": lambda: not any(low in k for k in thread),
            "hasAttachment": lambda: attachment == v,
            "from": lambda: low in _text(frm),
            "to": lambda: low in _text(to),
            "cc": lambda: low in _text(cc),
            "bcc": lambda: bool(bcc) and low in _text(bcc),
            "subject": lambda: low in subject.casefold(),
            "body": lambda: low in body.casefold(),
            "text": lambda: any(low in t for t in (subject.casefold(), _text(frm), _text(to), _text(cc),
                                                    _text(bcc) if bcc else "\x00", body.casefold())),
            "header": lambda: v[0].lower() == "x-tag" and tag is not None and (
                len(v) == 1 or v[1].casefold() in tag.casefold()),
        }[key]()
        if not ok:
            return False
    return True


def test_each_filter_against_the_reference():
    inbox, archive = S.boxes["INBOX"]["id"], S.boxes["Archive"]["id"]
    checks = [
        ({"text": "café"}, [1]), ({"text": "eve"}, [2]), ({"text": "invoice"}, [5, 6]),
        ({"from": "bob smith"}, [0]), ({"from": "BILLING@shop"}, [5, 6]), ({"to": "dave"}, [4]),
        ({"cc": "bob"}, [1]), ({"bcc": "eve@corp"}, [2]), ({"bcc": "bob"}, []),
        ({"subject": "quarterly"}, [2, 4]), ({"subject": "ünï"}, [3]), ({"body": "grüße"}, [3]),
        ({"body": "lunch"}, []), ({"header": ["X-Tag"]}, [0, 2, 3, 5]), ({"header": ["x-tag", "BLU"]}, [0, 3]),
        ({"header": ["X-Missing"]}, []), ({"before": "1970-01-01T00:50:00Z"}, [0, 1]),
        ({"after": "1970-01-01T01:40:00Z"}, [5, 6]), ({"hasKeyword": "$seen"}, [0, 3, 4]),
        ({"notKeyword": "$seen", "inMailbox": inbox}, [1, 2, 5, 6]), ({"hasKeyword": "work"}, [3, 6]),
        ({"allInThreadHaveKeyword": "$seen"}, [3]), ({"someInThreadHaveKeyword": "$seen"}, [0, 1, 2, 3, 4]),
        ({"noneInThreadHaveKeyword": "$seen"}, [5, 6]), ({"hasAttachment": True}, [2, 5]),
        ({"inMailboxOtherThan": [inbox]}, [3, 4]), ({"inMailbox": archive}, [3, 4]),
        ({"operator": "NOT", "conditions": [{"text": "invoice"}, {"inMailbox": archive}]}, [0, 1, 2]),
        ({"operator": "OR", "conditions": [{"body": "köln"}, {"operator": "AND", "conditions": [
            {"from": "billing"}, {"body": "42 eur"}]}]}, [3, 5]),
    ]
    for filter, expected in checks:
        got = sorted(rows(query(filter=filter)))
        assert got == expected, (filter, got)
        assert got == sorted(S.byRow[i] for i in S.ids if reference(filter, i)), filter


def test_sorts_collations_and_collapse():
    def order(*sort, **args):
        return rows(query(sort=list(sort), **args))
    assert order({"property": "receivedAt"}) == [0, 1, 2, 3, 4, 5, 6]
    assert order({"property": "size", "isAscending": False})[0] == 2  # the one with the attachment and a Bcc
    # Base subjects ("Re:" gone); ties in the list's order (newest first).
    assert order({"property": "subject"}) == [5, 6, 1, 0, 4, 2, 3]
    assert order({"property": "from"})[:3] == [4, 6, 5]  # Alice, billing, billing
    assert order({"property": "to", "isAscending": False})[0] == 4  # Dave, the only one not to Alice
    assert order({"property": "hasKeyword", "keyword": "$seen", "isAscending": False},
                 {"property": "receivedAt", "isAscending": False}) == [4, 3, 0, 6, 5, 2, 1]
    assert order({"property": "someInThreadHaveKeyword", "keyword": "work"},
                 {"property": "receivedAt"}) == [0, 1, 2, 4, 5, 3, 6]
    assert order({"property": "allInThreadHaveKeyword", "keyword": "$seen", "isAscending": False})[0] == 3
    assert order({"property": "sentAt"}) == [0, 1, 2, 3, 4, 5, 6]
    collapsed = query(collapseThreads=True, sort=[{"property": "receivedAt"}], calculateTotal=True)
    assert rows(collapsed) == [0, 2, 3, 5, 6]  # the first of each thread in the sorted result
    newest = S.ok("Email/query", collapseThreads=True, calculateTotal=True)
    assert rows(newest["ids"]) == [6, 5, 4, 3, 1] and newest["total"] == 5
    page = S.ok("Email/query", sort=[{"property": "subject"}], position=2, limit=2, calculateTotal=True)
    assert rows(page["ids"]) == [1, 0] and page["total"] == 7 and page["position"] == 2
    anchored = query(sort=[{"property": "subject"}], anchor=S.ids[2], anchorOffset=-1, limit=2)
    assert rows(anchored) == [4, 2]


def test_numeric_and_ascii_collations():
    s = MailSession()
    for n, subject in enumerate(["10 b", "9 a", "x", "É z", "e y"]):
        s.deliver(f"From: a@b\r\nSubject: {subject}\r\n\r\nx\r\n".encode(), date=1000 + n)
    ids = s.ok("Email/query", sort=[{"property": "receivedAt"}])["ids"]
    subjects = dict(zip(ids, ["10 b", "9 a", "x", "É z", "e y"]))

    def order(collation):
        return [subjects[i] for i in s.ok("Email/query", sort=[{"property": "subject", "collation": collation}])["ids"]]
    assert order("i;ascii-numeric")[:2] == ["9 a", "10 b"]
    assert order("i;unicode-casemap") == ["10 b", "9 a", "e y", "x", "É z"] or order("i;unicode-casemap")[2] == "e y"
    assert order("i;ascii-casemap")[-1] == "É z"  # not ASCII: after the letters


def test_errors():
    for args, error in (
            ({"filter": {"snippet": "x"}}, "unsupportedFilter"),
            ({"filter": {"operator": "XOR", "conditions": []}}, "unsupportedFilter"),
            ({"filter": {"operator": "AND", "conditions": [{"nope": 1}]}}, "unsupportedFilter"),
            ({"filter": {"operator": "AND", "conditions": "x"}}, "unsupportedFilter"),
            ({"filter": {"text": 5}}, "invalidArguments"),
            ({"filter": {"text": "x" * 1001}}, "invalidArguments"),
            ({"filter": {"header": []}}, "invalidArguments"),
            ({"filter": {"header": ["a", "b", "c"]}}, "invalidArguments"),
            ({"filter": {"header": ["Bad Name"]}}, "invalidArguments"),
            ({"filter": {"allInThreadHaveKeyword": "no good"}}, "invalidArguments"),
            ({"filter": {"inMailboxOtherThan": "x"}}, "invalidArguments"),
            ({"filter": {"after": "2026-12-03"}}, "invalidArguments"),
            ({"filter": {"hasAttachment": 1}}, "invalidArguments"),
            ({"sort": [{"property": "id"}]}, "unsupportedSort"),
            ({"sort": [{"property": "subject", "collation": "i;octet"}]}, "unsupportedSort"),
            ({"sort": [{"property": "hasKeyword"}]}, "invalidArguments"),
            ({"sort": [{"property": "size", "keyword": "$seen"}]}, "invalidArguments"),
            ({"sort": [{"property": "size", "isAscending": "no"}]}, "invalidArguments"),
            ({"sort": "size"}, "invalidArguments"),
            ({"anchor": "nope"}, "anchorNotFound"),
            ({"collapseThreads": 1}, "invalidArguments")):
        assert S.error("Email/query", **args) == error, args
    deep = {"text": "x"}
    for _ in range(30):
        deep = {"operator": "NOT", "conditions": [deep]}
    assert S.error("Email/query", filter=deep) == "unsupportedFilter"


def test_text_filters_open_only_what_the_list_fields_leave_open(monkeypatch):
    from mailnet.jmap import emailquery

    opened = []
    original = emailquery.Reader.loadText

    async def counting(self, c):
        opened.append(c.summary.emailId)
        return await original(self, c)
    monkeypatch.setattr(emailquery.Reader, "loadText", counting)
    assert rows(query(filter={"text": "invoice"})) == [6, 5]
    assert opened == [i for i in S.ids if S.byRow[i] not in (5, 6)][::-1]  # subject matched: not opened
    opened.clear()
    assert rows(query(filter={"body": "fine", "hasKeyword": "$flagged"})) == []
    assert len(opened) == 1  # only the flagged one is read
    opened.clear()
    assert rows(query(filter={"body": "eur"}, limit=1)) == [6]
    assert len(opened) == 1  # stops at the first page


def _conditions(boxes):
    text = st.sampled_from(WORDS)
    keyword = st.sampled_from(["$seen", "$flagged", "work", "$draft"])
    date = st.integers(0, 2).map(lambda h: h).flatmap(
        lambda h: st.integers(0, 59).map(lambda m: f"1970-01-01T{h:02d}:{m:02d}:00Z"))
    single = st.one_of(
        st.fixed_dictionaries({"inMailbox": st.sampled_from(boxes)}),
        st.fixed_dictionaries({"inMailboxOtherThan": st.lists(st.sampled_from(boxes), max_size=2)}),
        st.fixed_dictionaries({"before": date}), st.fixed_dictionaries({"after": date}),
        st.fixed_dictionaries({"minSize": st.integers(0, 1200)}),
        st.fixed_dictionaries({"maxSize": st.integers(0, 1200)}),
        *[st.fixed_dictionaries({k: keyword}) for k in ("hasKeyword", "notKeyword", "allInThreadHaveKeyword",
                                                          "someInThreadHaveKeyword", "noneInThreadHaveKeyword")],
        st.fixed_dictionaries({"hasAttachment": st.booleans()}),
        *[st.fixed_dictionaries({k: text}) for k in ("text", "from", "to", "bcc", "subject", "body")],
        st.fixed_dictionaries({"header": st.one_of(st.just(["X-Tag"]), st.sampled_from(
            ["blue", "re", "", "green"]).map(lambda v: ["x-tag", v]))}),
    )
    condition = st.lists(single, min_size=1, max_size=3).map(lambda ds: {k: v for d in ds for k, v in d.items()})
    return st.recursive(condition, lambda inner: st.fixed_dictionaries({
        "operator": st.sampled_from(["AND", "OR", "NOT"]), "conditions": st.lists(inner, max_size=3)}),
        max_leaves=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_filter_trees_match_the_reference(data):
    filter = data.draw(_conditions([S.boxes["INBOX"]["id"], S.boxes["Archive"]["id"]]))
    got = query(filter=filter)
    expected = [i for i in S.ids[::-1] if reference(filter, i)]  # newest first
    assert got == expected, filter


def test_query_changes():
    s = corpus()
    inbox = s.boxes["INBOX"]["id"]
    filter = {"inMailbox": inbox, "notKeyword": "$seen"}
    first = s.ok("Email/query", filter=filter)
    assert first["canCalculateChanges"] is True
    unchanged = s.ok("Email/queryChanges", filter=filter, sinceQueryState=first["queryState"])
    assert unchanged["removed"] == [] and unchanged["added"] == []
    old = first["ids"]
    s.ok("Email/set", update={old[0]: {"keywords/$seen": True}})  # leaves the result
    s.deliver(build(ROWS[0], 9), date=9000)  # a new unseen one at the top
    changes = s.ok("Email/queryChanges", filter=filter, sinceQueryState=first["queryState"], calculateTotal=True)
    new = s.ok("Email/query", filter=filter)
    assert changes["newQueryState"] == new["queryState"] and changes["total"] == len(new["ids"])
    # The client's update: remove, then insert each added id at its index.
    cached = [i for i in old if i not in changes["removed"]]
    for item in sorted(changes["added"], key=lambda a: a["index"]):
        cached.insert(item["index"], item["id"])
    assert cached == new["ids"]
    assert old[0] in changes["removed"] and {"id": new["ids"][0], "index": 0} in changes["added"]
    assert s.error("Email/queryChanges", filter=filter, sinceQueryState=first["queryState"],
                   maxChanges=1) == "tooManyChanges"
    # upToId: only with immutable filters and sorts; the changes after it are left out.
    everything = {"filter": {"after": "1970-01-01T00:00:00Z"}, "sort": [{"property": "receivedAt"}],
                  "sinceQueryState": first["queryState"]}
    whole = s.ok("Email/queryChanges", **everything)
    assert [a["index"] for a in whole["added"]] == [6, 7]  # the one marked seen, the new one
    assert s.ok("Email/queryChanges", upToId=s.ids[2], **everything)["added"] == []
    mutable = dict(everything, filter={"notKeyword": "$draft"})
    assert len(s.ok("Email/queryChanges", upToId=s.ids[2], **mutable)["added"]) == 2  # upToId ignored
    for args in ({"collapseThreads": True}, {"filter": {"someInThreadHaveKeyword": "$seen"}},
                 {"sort": [{"property": "allInThreadHaveKeyword", "keyword": "$seen"}]}):
        assert s.ok("Email/query", **args)["canCalculateChanges"] is False
        assert s.error("Email/queryChanges", sinceQueryState=first["queryState"], **args) == "cannotCalculateChanges"
    assert s.error("Email/queryChanges", sinceQueryState="bogus") == "cannotCalculateChanges"
    assert s.error("Email/queryChanges", sinceQueryState=5) == "invalidArguments"
    assert s.error("Email/queryChanges", sinceQueryState=first["queryState"], upToId=3) == "invalidArguments"


def test_search_snippets():
    [lunch, reply, report] = S.ids[:3]
    got = S.ok("SearchSnippet/get", emailIds=[reply, lunch, report, "nope"],
               filter={"operator": "AND", "conditions": [
                   {"text": "lunch"}, {"body": "CAFÉ"},
                   {"operator": "NOT", "conditions": [{"subject": "plans"}]}]})
    snippets = {s["emailId"]: s for s in got["list"]}
    assert got["notFound"] == ["nope"] and set(snippets) == {reply, lunch, report}
    assert snippets[reply]["subject"] == "Re: <mark>Lunch</mark> plans"  # "plans" is under NOT: not marked
    assert snippets[reply]["preview"] == "Noon is fine, <mark>café</mark> downstairs."
    assert snippets[lunch]["preview"] is None and snippets[report]["subject"] is None
    assert S.ok("SearchSnippet/get", emailIds=[lunch], filter=None)["list"] == [
        {"emailId": lunch, "subject": None, "preview": None}]
    assert S.error("SearchSnippet/get", emailIds=[lunch], filter={"snippet": "x"}) == "unsupportedFilter"
    assert S.error("SearchSnippet/get", emailIds=None, filter=None) == "invalidArguments"
    assert S.error("SearchSnippet/get", emailIds=["x"] * 501) == "requestTooLarge"


def test_snippets_escape_html_and_cut_long_bodies():
    from mailnet.jmap.searchsnippet import highlight, preview, _pattern

    p = _pattern({"b&c", "x"})
    assert highlight("<a> b&C </a>", p) == "&lt;a&gt; <mark>b&amp;C</mark> &lt;/a&gt;"
    long = "word " * 200 + "needle " + "tail " * 200
    piece = preview(long, _pattern({"needle"}))
    assert "<mark>needle</mark>" in piece and len(piece) <= 255 + len("<mark></mark>")
    assert piece.startswith("word") and not piece.startswith("ord")
    s = MailSession()
    s.deliver(b"Subject: <script>x</script>\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>big</b> world"
              b"<script>alert(1)</script></p>\r\n")
    [emailId] = s.ok("Email/query")["ids"]
    [snippet] = s.ok("SearchSnippet/get", emailIds=[emailId], filter={"text": "script"})["list"]
    assert snippet["subject"] == "&lt;<mark>script</mark>&gt;x&lt;/<mark>script</mark>&gt;"
    assert snippet["preview"] is None  # the script's text is not the body's
    [snippet] = s.ok("SearchSnippet/get", emailIds=[emailId], filter={"body": "big"})["list"]
    assert snippet["preview"] == "Hello <mark>big</mark> world"


def test_mailbox_query_changes():
    s = MailSession()
    first = s.ok("Mailbox/query", sort=[{"property": "name"}])
    assert first["canCalculateChanges"] is True
    assert s.ok("Mailbox/query", filter={"isSubscribed": True})["canCalculateChanges"] is False
    s.deliver(b"Subject: x\r\n\r\nx\r\n")  # counts only: nothing moves
    same = s.ok("Mailbox/queryChanges", sort=[{"property": "name"}], sinceQueryState=first["queryState"])
    assert same["removed"] == [] and same["added"] == [] and same["newQueryState"] != first["queryState"]
    created = s.ok("Mailbox/set", create={"a": {"name": "Aardvark"}})["created"]["a"]["id"]
    changes = s.ok("Mailbox/queryChanges", sort=[{"property": "name"}], sinceQueryState=first["queryState"],
                   calculateTotal=True)
    now = s.ok("Mailbox/query", sort=[{"property": "name"}])["ids"]
    assert changes["added"] == [{"id": created, "index": now.index(created)}] and changes["total"] == len(now)
    cached = list(first["ids"])
    cached.insert(changes["added"][0]["index"], created)
    assert cached == now
    s.ok("Mailbox/set", update={created: {"name": "Zebra"}})
    # Created and renamed since the first state: just created, now at its new place.
    again = s.ok("Mailbox/queryChanges", sort=[{"property": "name"}], sinceQueryState=first["queryState"])
    assert again["added"] == [{"id": created, "index": s.ok("Mailbox/query", sort=[{"property": "name"}])["ids"].index(created)}]
    # Renamed since the second: other Mailboxes' names may have changed with it.
    assert s.error("Mailbox/queryChanges", sinceQueryState=changes["newQueryState"]) == "cannotCalculateChanges"
    assert s.error("Mailbox/queryChanges", sinceQueryState=changes["newQueryState"],
                   filter={"isSubscribed": True}) == "cannotCalculateChanges"
    assert s.error("Mailbox/queryChanges", sinceQueryState=1) == "invalidArguments"
