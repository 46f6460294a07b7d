"""The pure SMTP grammar: command lines, paths, parameters, xtext."""

import pytest
from hypothesis import given, settings, strategies as st

from mailnet.smtp import parser, replies
from mailnet.smtp.parser import ParseError


def code(fn, *args, **kw):
    with pytest.raises(ParseError) as info:
        fn(*args, **kw)
    return info.value.reply.code, info.value.reply.enhanced


class TestCommand:
    def test_verb_upper_cased_and_argument_kept(self):
        c = parser.parseCommand(b"mail FROM:<a@b.example> SIZE=10")
        assert (c.verb, c.arg) == ("MAIL", "FROM:<a@b.example> SIZE=10")

    def test_no_argument(self):
        c = parser.parseCommand(b"QUIT")
        assert (c.verb, c.arg) == ("QUIT", "")

    @pytest.mark.parametrize("line", [b"", b" MAIL", b"MA1L x", b"\xff\xfe", b"X" * 17])
    def test_bad_verb(self, line):
        assert code(parser.parseCommand, line)[0] == 500

    def test_control_characters_refused(self):
        assert code(parser.parseCommand, b"HELO a\x00b") == (501, "5.5.4")
        assert code(parser.parseCommand, b"HELO a\rb") == (501, "5.5.4")

    def test_invalid_utf8(self):
        assert code(parser.parseCommand, b"HELO \xc3") == (500, "5.5.2")


class TestPath:
    def test_simple(self):
        assert parser.parsePath("<Alice@Example.TEST>", False) == ("Alice@example.test", "")

    def test_space_after_colon_and_params(self):
        assert parser.parsePath(" <a@b.example> SIZE=1 BODY=8BITMIME", True) == ("a@b.example", "SIZE=1 BODY=8BITMIME")

    def test_null_sender(self):
        assert parser.parsePath("<>", True) == ("", "")
        assert code(parser.parsePath, "<>", False)[0] == 501

    def test_postmaster(self):
        assert parser.parsePath("<Postmaster>", False, allowPostmaster=True) == ("postmaster", "")
        assert code(parser.parsePath, "<Postmaster>", False)[0] == 501

    def test_source_route_ignored(self):
        # RFC 5321 s4.1.2 / appendix C: accepted, route dropped
        assert parser.parsePath("<@relay.example,@other.example:u@d.example>", False)[0] == "u@d.example"

    def test_quoted_local_part(self):
        assert parser.parsePath('<"john doe"@example.test>', False)[0] == '"john doe"@example.test'
        assert parser.parsePath('<"a\\"b"@example.test>', False)[0] == '"a\\"b"@example.test'
        # needless quotes are removed
        assert parser.parsePath('<"john"@example.test>', False)[0] == "john@example.test"
        # a quoted ">" does not end the path
        assert parser.parsePath('<"a>b"@example.test> X=1', False) == ('"a>b"@example.test', "X=1")

    def test_utf8(self):
        assert parser.parsePath("<pelé@exämple.test>", False)[0] == "pelé@exämple.test"

    def test_address_literals(self):
        assert parser.parsePath("<u@[192.0.2.1]>", False)[0] == "u@[192.0.2.1]"
        assert parser.parsePath("<u@[IPv6:2001:db8::1]>", False)[0] == "u@[IPv6:2001:db8::1]"
        assert code(parser.parsePath, "<u@[300.1.1.1]>", False)[0] == 501
        assert code(parser.parsePath, "<u@[IPv6:zz]>", False)[0] == 501

    @pytest.mark.parametrize("text", [
        "a@b.example", "<a@b.example", "<a>", "<@b.example>", "<a@>", "<a..b@c.example>", "<.a@c.example>",
        "<a@b..example>", "<a@-b.example>", "<a b@c.example>", "<a@b.example>x", '<"unterminated@b.example>',
    ])
    def test_bad_syntax(self, text):
        assert code(parser.parsePath, text, False) == (501, "5.1.3")

    def test_sender_syntax_code(self):
        assert code(parser.parsePath, "<x", True) == (501, "5.1.7")

    def test_lengths(self):
        # RFC 5321 s4.5.3.1: local part 64, path 256
        assert parser.parsePath("<" + "a" * 64 + "@b.example>", False)
        assert code(parser.parsePath, "<" + "a" * 65 + "@b.example>", False)[0] == 501
        long_domain = ".".join(["d" * 60] * 5)
        assert code(parser.parsePath, f"<a@{long_domain}>", False)[0] == 501


class TestParams:
    def test_parse(self):
        assert parser.parseParams("size=10 BODY=8BITMIME SMTPUTF8") == {"SIZE": "10", "BODY": "8BITMIME", "SMTPUTF8": None}

    def test_repeated_or_bad(self):
        assert code(parser.parseParams, "SIZE=1 size=2")[0] == 501
        assert code(parser.parseParams, "=x")[0] == 501
        assert code(parser.parseParams, "A=b=c")[0] == 501

    def test_mail_params(self):
        p = parser.parseMailParams(parser.parseParams("SIZE=1000 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=QQ+2Bx AUTH=<>"))
        assert (p.size, p.body, p.smtputf8, p.ret, p.envid, p.auth) == (1000, "8BITMIME", True, "HDRS", "QQ+2Bx", "<>")

    @pytest.mark.parametrize("text,expected", [
        ("SIZE=abc", 501), ("SIZE", 501), ("BODY=BINARYMIME", 555), ("SMTPUTF8=1", 501), ("RET=ALL", 501),
        ("ENVID=" + "x" * 101, 501), ("ENVID=a+zz", 501), ("FOO=1", 555),
    ])
    def test_bad_mail_params(self, text, expected):
        assert code(parser.parseMailParams, parser.parseParams(text))[0] == expected

    def test_rcpt_params(self):
        p = parser.parseRcptParams(parser.parseParams("NOTIFY=delay,success ORCPT=rfc822;a+2Bb@c.example"))
        assert p.notify == ["SUCCESS", "DELAY"]
        assert p.orcpt == "rfc822;a+2Bb@c.example"
        assert parser.parseRcptParams({"NOTIFY": "NEVER"}).notify == ["NEVER"]

    @pytest.mark.parametrize("text", ["NOTIFY=NEVER,SUCCESS", "NOTIFY=SOMETIMES", "NOTIFY=SUCCESS,SUCCESS",
                                      "ORCPT=rfc822", "ORCPT=;a@b", "ORCPT=rfc822;"])
    def test_bad_rcpt_params(self, text):
        assert code(parser.parseRcptParams, parser.parseParams(text))[0] == 501

    def test_orcpt_utf8_needs_smtputf8(self):
        assert code(parser.parseRcptParams, {"ORCPT": "rfc822;pelé@a.example"})[0] == 501
        assert parser.parseRcptParams({"ORCPT": "utf-8;pelé@a.example"}, smtputf8=True).orcpt == "utf-8;pelé@a.example"

    def test_unknown_rcpt_param(self):
        assert code(parser.parseRcptParams, {"X": "1"})[0] == 555

    def test_bdat(self):
        assert parser.parseBdat("100") == (100, False)
        assert parser.parseBdat("0 last") == (0, True)
        for bad in ("", "x", "1 2", "1 LAST x", "-1", "١٢"):
            assert code(parser.parseBdat, bad)[0] == 501


class TestXtext:
    # The codec itself is tested in tests/mail/test_codecs.py.
    def test_auth_parameter_decoded(self):
        assert parser.parseMailParams({"AUTH": "a+2Bb+3Dc@x.example"}).auth == "a+b=c@x.example"

    def test_bad(self):
        assert code(parser.parseMailParams, {"AUTH": "a+2"})[0] == 501
        assert code(parser.parseMailParams, {"AUTH": "a=b"})[0] == 501
        assert code(parser.parseMailParams, {"ENVID": "a+2"})[0] == 501


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fuzz_parse_command_only_parse_errors(line):
    try:
        command = parser.parseCommand(line)
    except ParseError as e:
        assert isinstance(e.reply, replies.Reply) and e.reply.code >= 500
        return
    for fn in (lambda a: parser.parsePath(a, True), lambda a: parser.parsePath(a, False, True),
               parser.parseParams, parser.parseBdat, parser.parseHelo):
        try:
            fn(command.arg)
        except ParseError as e:
            assert e.reply.code in (500, 501, 555)
