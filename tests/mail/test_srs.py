"""
SRS addresses (mailnet/mail/srs.py) against Mail::SRS, the Perl reference
implementation (Debian's libmail-srs-perl): the same secret and the same
day give the same address, each side reverses the other's, and the
refusals (a wrong hash, an expired timestamp) agree.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mailnet.mail import srs

SECRET = b"t0p-s3cret"
NOW = 1_796_000_000.0  # 2026-11-30
DAY = 86400


def _perl(code, now=NOW):
    """Run ``code`` with Mail::SRS (Secret, MaxAge 21), its clock fixed at ``now``."""
    if shutil.which("perl") is None or subprocess.run(["perl", "-MMail::SRS", "-e", "1"],
                                                      capture_output=True).returncode:
        pytest.skip("Mail::SRS (libmail-srs-perl) is not installed")
    script = ("BEGIN { *CORE::GLOBAL::time = sub { %d } } use Mail::SRS; "
              "my $s = Mail::SRS->new(Secret => '%s', MaxAge => 21); %s") % (int(now), SECRET.decode(), code)
    out = subprocess.run(["perl", "-e", script], capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout.strip(), out.stderr.strip()


SENDERS = ["alice@example.org", "Alice.Smith@Example.ORG", "a+tag=x@sub.example.net", "user@xn--bcher-kva.example"]


@pytest.mark.parametrize("sender", SENDERS)
def test_forward_is_what_mail_srs_writes(sender):
    rc, expected, err = _perl(f"print $s->forward('{sender}', 'fwd.example.com');")
    assert rc == 0, err
    assert expected.startswith("SRS0=")
    assert srs.forward(sender, "fwd.example.com", SECRET, NOW) == expected
    # and Mail::SRS reverses ours, we reverse its
    rc, back, err = _perl(f"print $s->reverse('{expected}');")
    assert (rc, back) == (0, sender), err
    assert srs.reverse(expected, [SECRET], NOW) == sender


def test_srs1_of_another_forwarders_srs0_and_back():
    theirs = "SRS0=abcd=G3=example.org=alice@first.example"
    rc, expected, err = _perl(f"print $s->forward('{theirs}', 'fwd.example.com');")
    assert rc == 0, err
    ours = srs.forward(theirs, "fwd.example.com", SECRET, NOW)
    assert ours == expected
    assert ours.startswith("SRS1=") and ours.endswith("=first.example==abcd=G3=example.org=alice@fwd.example.com")
    # a bounce to SRS1 goes to the first forwarder's SRS0 address (whose hash is theirs to check)
    assert srs.reverse(ours, [SECRET], NOW) == theirs
    rc, back, err = _perl(f"print $s->reverse('{ours}');")
    assert (rc, back) == (0, theirs), err


def test_srs1_forwarded_again_keeps_the_first_forwarder():
    srs1 = srs.forward("SRS0=abcd=G3=example.org=alice@first.example", "second.example", SECRET, NOW)
    rc, expected, err = _perl(f"print $s->forward('{srs1}', 'third.example');")
    assert rc == 0, err
    again = srs.forward(srs1, "third.example", SECRET, NOW)
    assert again == expected
    assert again.rpartition("@")[0] == srs1.rpartition("@")[0]  # same secret: same hash, new host
    assert srs.reverse(again, [SECRET], NOW) == "SRS0=abcd=G3=example.org=alice@first.example"


def test_timestamp_is_mail_srs_base32_day():
    for t in (0, NOW, NOW + 37 * DAY, 2**31):
        rc, expected, err = _perl("print $s->timestamp_create(time());", now=t)
        assert rc == 0, err
        assert srs.timestamp(t) == expected


@pytest.mark.parametrize("age,valid", [(0, True), (1, True), (21, True), (22, False), (400, False), (-1, False)])
def test_expiry_agrees_with_mail_srs(age, valid):
    address = srs.forward("alice@example.org", "fwd.example.com", SECRET, NOW)
    later = NOW + age * DAY
    rc, out, err = _perl(f"print eval {{ $s->reverse('{address}') }} || 'ERR';", now=later)
    assert (out == "alice@example.org") is valid, (out, err)
    if valid:
        assert srs.reverse(address, [SECRET], later) == "alice@example.org"
    else:
        with pytest.raises(srs.SRSError, match="expired"):
            srs.reverse(address, [SECRET], later)


def test_bad_hash_refused_by_both():
    address = srs.forward("alice@example.org", "fwd.example.com", SECRET, NOW)
    tag, hash_, rest = address.split("=", 2)
    forged = f"{tag}={'AAAA' if hash_ != 'AAAA' else 'BBBB'}={rest}"
    with pytest.raises(srs.SRSError, match="hash"):
        srs.reverse(forged, [SECRET], NOW)
    rc, out, _ = _perl(f"print eval {{ $s->reverse('{forged}') }} || 'ERR';")
    assert out == "ERR"
    # another secret, and a changed original address, are refused too
    with pytest.raises(srs.SRSError, match="hash"):
        srs.reverse(address, [b"other"], NOW)
    with pytest.raises(srs.SRSError, match="hash"):
        srs.reverse(address.replace("=alice@", "=mallory@"), [SECRET], NOW)


def test_case_smashed_by_a_hop_still_reverses():
    address = srs.forward("Alice@Example.org", "fwd.example.com", SECRET, NOW)
    for smashed in (address.lower(), address.upper()):
        assert srs.reverse(smashed, [SECRET], NOW).lower() == "alice@example.org"
    rc, out, _ = _perl(f"print $s->reverse('{address.lower()}');")
    assert out.lower() == "alice@example.org"


def test_old_secrets_still_verify():
    address = srs.forward("alice@example.org", "fwd.example.com", b"old", NOW)
    assert srs.reverse(address, [SECRET, b"old"], NOW) == "alice@example.org"


def test_separators_and_tags():
    address = srs.forward("alice@example.org", "fwd.example.com", SECRET, NOW)
    plus = "SRS0+" + address[5:]
    assert srs.reverse(plus, [SECRET], NOW) == "alice@example.org"
    assert srs.isSRS(address) and srs.isSRS("srs1=x=y==z@d") and not srs.isSRS("srs@example.org")
    assert srs.forward("bob@fwd.example.com", "fwd.example.com", SECRET, NOW) == "bob@fwd.example.com"
    for damaged in ("SRS0=abc@fwd.example.com", "SRS1=x@fwd.example.com", "bob@fwd.example.com", "nobody"):
        with pytest.raises(srs.SRSError):
            srs.reverse(damaged, [SECRET], NOW)


def test_secret_file_lines():
    assert srs.parseSecrets(b"new\n\nold\r\n") == [b"new", b"old"]
