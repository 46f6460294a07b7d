"""mailnet.mail.codecs: xtext and modified UTF-7, each equal to every copy it replaced."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailnet.mail import codecs
from tests.mail import _reference as old

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text near the xtext grammar: hexchars (upper and lower case, cut short),
# the characters xtext excludes, and any other text.
xtextish = st.lists(st.one_of(
    st.sampled_from(["+", "=", "+2B", "+3d", "+C3+A9", "+e9", "+4", "+zz", " ", "\x00", "\x7f", "é", "a", "~"]),
    st.text(max_size=4),
), max_size=12).map("".join)


@FUZZ
@given(st.text())
def test_encode_xtext_equals_both_old_copies(text):
    assert codecs.encodeXtext(text) == old.parserEncodeXtext(text) == old.clientXtextEncode(text)


@FUZZ
@given(xtextish)
def test_strict_decode_equals_the_smtp_parsers(text):
    assert codecs.isXtext(text) == old.parserIsXtext(text)
    try:
        expected = old.parserDecodeXtext(text)
    except ValueError:
        with pytest.raises(ValueError):
            codecs.decodeXtext(text)
    else:
        assert codecs.decodeXtext(text) == expected


@FUZZ
@given(xtextish)
def test_lenient_decode_equals_the_dsns(text):
    assert codecs.decodeXtext(text, strict=False) == old.dsnXtextDecode(text)


@FUZZ
@given(st.text())
def test_xtext_round_trip(text):
    encoded = codecs.encodeXtext(text)
    assert codecs.isXtext(encoded)
    assert codecs.decodeXtext(encoded) == text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def test_xtext_examples():
    assert codecs.encodeXtext("a+b=c") == "a+2Bb+3Dc"
    assert codecs.decodeXtext("a+2Bb+3Dc") == "a+b=c"
    assert codecs.decodeXtext("caf+C3+A9") == "café"
    for bad in ("a+2", "a=b", "a b", "é"):
        with pytest.raises(ValueError):
            codecs.decodeXtext(bad)
    # Lenient: what is not a hexchar stays as it is.
    assert codecs.decodeXtext("a b+2", strict=False) == "a b+2"


# Modified UTF-7

names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
# Strings near the grammar: real encodings glued together, and pieces of them.
pieces = st.one_of(
    names.map(codecs.encodeMutf7),
    st.sampled_from(["&", "-", "&-", "&AGE-", "&AOk-", "&AOg-", "&AOk", "&AOl-", "&2D3eAA-", "&2D3-", "&,", "&/+-",
                     "&ZeVnLIqe-", "&AOkA6Q-", "&AOkA6A", "é", "\x00", "\x7f", "a"]),
    st.text(alphabet="&-+,/AOkZeV0=", max_size=6),
)
mutf7ish = st.lists(pieces, max_size=5).map("".join)


@FUZZ
@given(names)
def test_encode_mutf7_equals_both_old_copies(name):
    assert codecs.encodeMutf7(name) == old.storeEncodeMutf7(name) == old.imapEncodeMailbox(name).decode("ascii")


def _result(f, arg):
    try:
        return ("ok", f(arg))
    except ValueError:
        return ("refused", None)


@FUZZ
@given(mutf7ish)
def test_decode_mutf7_applies_both_old_checks(text):
    new = _result(codecs.decodeMutf7, text)
    store = _result(old.storeDecodeMutf7, text)
    imap = _result(old.imapDecodeMailbox, text.encode("utf-8", "surrogatepass"))
    if store[0] == imap[0] == "ok":
        assert new == store == imap
    else:
        # Refused when either old copy refused it.
        assert new[0] == "refused"


@FUZZ
@given(names)
def test_mutf7_round_trip(name):
    assert codecs.decodeMutf7(codecs.encodeMutf7(name)) == name


@pytest.mark.parametrize("name, encoded", [
    ("INBOX", "INBOX"), ("a&b", "a&-b"), ("Entwürfe", "Entw&APw-rfe"), ("日本語", "&ZeVnLIqe-"),
    ("é/é", "&AOk-/&AOk-"), ("😀", "&2D3eAA-"),
])
def test_mutf7_examples(name, encoded):
    assert codecs.encodeMutf7(name) == encoded
    assert codecs.decodeMutf7(encoded) == name


@pytest.mark.parametrize("bad", [
    "é",  # 8-bit
    "a\x01",  # control
    "&AOk",  # unterminated
    "&AGE-",  # encoded ASCII ("a")
    "&AOk-&AOk-",  # adjacent runs (the store copy allowed this one)
    "&AOl-",  # non-zero padding bits
    "&2D3-",  # a lone surrogate
    "&A-",  # base64 of one sextet
    "&AO/-",  # "/" is not in the modified base64 alphabet
])
def test_mutf7_refuses_non_canonical(bad):
    with pytest.raises(ValueError):
        codecs.decodeMutf7(bad)
