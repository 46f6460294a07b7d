"""
Speed for dkimpy, without changing what it computes.

dkimpy does RSA in Python and parses keys and canonicalizes with
general-purpose code on every message; for a 4 KB message that cost more
than all the rest of SMTP's work.  This module replaces, by the names
dkimpy calls, a few of its functions with equivalents (each checked against
dkimpy's own in tests/mailauth/test_dkim.py):

* the RSA signature and its check, through OpenSSL (``cryptography``);
  PKCS#1 v1.5 is deterministic, so signatures are byte for byte the same;
* parsing a private key or a key record: cached (the same few keys again
  and again; the results are only read);
* relaxed canonicalization's whitespace rules, written so that a single
  space (nearly every match in text) is not replaced by itself, and so that
  text without a tab, two spaces in a row or a space at a line's end is
  not scanned by a regex at all;
* the pattern that removes b= from the signature field, written without
  nested optional groups per character (the same matches);
* splitting the message into fields and body without a regex split and
  re-join of the whole body.

:func:`install` is called by :mod:`.dkimsign` and :mod:`.dkimcheck`;
calling it twice changes nothing.  It first checks that each name exists in
dkimpy with the parameters it had in the versions this was tested with
(pyproject.toml pins dkimpy to them); if one does not, it replaces nothing,
logs one warning, and dkimpy runs as it comes (slower, same results).
"""

from __future__ import annotations

import functools
import inspect
import re

import dkim
import dkim.canonicalization
import dkim.crypto

from mailnet.logs import Logger

log = Logger()

# dkimpy computes the RSA signature in Python (pow() on the CRT halves):
# about ten times OpenSSL's cost, which made signing cost more than the rest
# of a 4 KB message's SMTP handling together.  PKCS#1 v1.5 signatures are
# deterministic, so OpenSSL's (through ``cryptography``) is byte for byte
# the one dkimpy would make (tests/mailauth/test_dkim.py checks); dkimpy
# still does everything else (canonicalization, hashing, the field).
_pythonSign = getattr(dkim.crypto, "RSASSA_PKCS1_v1_5_sign", None)


@functools.lru_cache(maxsize=64)
def _opensslKey(n, e, d, p, q, dmp1, dmq1, iqmp):
    from cryptography.hazmat.primitives.asymmetric import rsa

    public = rsa.RSAPublicNumbers(e, n)
    return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, public).private_key()


def _opensslSign(hash, private_key):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    algorithm = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}.get(hash.name.lower())
    if algorithm is None:
        return _pythonSign(hash, private_key)
    k = private_key
    key = _opensslKey(k["modulus"], k["publicExponent"], k["privateExponent"], k["prime1"], k["prime2"],
                      k["exponent1"], k["exponent2"], k["coefficient"])
    return key.sign(hash.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))


# dkimpy parses the PEM key (ASN.1, in Python) for every message: keep the few we have
# parsed.  The result is only read.
_parsePrivate = functools.lru_cache(maxsize=64)(getattr(dkim.crypto, "parse_pem_private_key", None) or (lambda data: None))


# Verifying: dkimpy's RSA arithmetic in Python (the bytes conversions around
# pow()) cost more than the rest of a verification; OpenSSL checks the same
# PKCS#1 v1.5 signature (tests compare both).
_pythonVerify = getattr(dkim.crypto, "RSASSA_PKCS1_v1_5_verify", None)


@functools.lru_cache(maxsize=256)
def _opensslPublic(n, e):
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.RSAPublicNumbers(e, n).public_key()


def _opensslVerify(hash, signature, public_key):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    algorithm = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}.get(hash.name.lower())
    if algorithm is None:
        return _pythonVerify(hash, signature, public_key)
    try:
        key = _opensslPublic(public_key["modulus"], public_key["publicExponent"])
        key.verify(bytes(signature), hash.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))
        return True
    except InvalidSignature:
        return False
    except ValueError:  # a key OpenSSL refuses (tiny, even exponent): dkimpy decides
        return _pythonVerify(hash, signature, public_key)


# dkimpy parses a key record (ASN.1, in Python) for every signature: the same
# senders' keys come again and again.  Keyed by the record's bytes; only read.
_pythonEvaluate = getattr(dkim, "evaluate_pk", None)
_evaluate = functools.lru_cache(maxsize=1024)(_pythonEvaluate or (lambda name, s: None))


# Relaxed canonicalization (RFC 6376 s3.4.2, s3.4.4): "reduce all sequences
# of WSP to a single SP".  dkimpy replaces every run, single spaces included;
# a run that is already one space needs no replacement.
_WSP_RUN = re.compile(rb"[\t ]{2,}|\t")
_pythonCompress = getattr(dkim.canonicalization, "compress_whitespace", None)
_pythonUnfold = getattr(dkim.canonicalization, "unfold_header_value", None)


def compressWhitespace(content):
    # Most text has neither a tab nor two spaces in a row: two C-speed
    # searches instead of a regex scan of the whole body.
    if b"\t" not in content and b"  " not in content:
        return content
    return _WSP_RUN.sub(b" ", content)


# s3.4.4 a: "ignore all whitespace at the end of lines"; a line that ends
# in a space or tab is rare, so look for one before running the regex.
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_pythonStripTrailing = getattr(dkim.canonicalization, "strip_trailing_whitespace", None)


def stripTrailingWhitespace(content):
    if b" \r\n" not in content and b"\t\r\n" not in content:
        return content
    return _TRAILING_WSP.sub(b"\r\n", content)


def unfoldHeaderValue(content):
    """s3.4.2: remove CRLF (and bare LF) line breaks, as dkimpy's ``\r?\n``."""
    return content.replace(b"\r\n", b"").replace(b"\n", b"")


# The b= tag removed from the signature field before it is hashed (RFC 6376
# s3.7).  dkimpy's pattern puts its folding-whitespace group, itself nested
# optional groups, before every character of the base64 value, which makes
# the regex engine work hard on each of the 344 characters of an RSA-2048
# signature.  Written with \s* instead (the same strings: FWS there is "any
# whitespace, or none", since \s includes CR and LF) and a run of base64
# characters per step, it matches the same spans (a Hypothesis test compares
# both on random fields).
_BTAG_PATTERN = (rb'([;\s]b(?:(?:\s*\r?\n)?\s+)?=)(?:(?:(?:\s*\r?\n)?\s+)?[a-zA-Z0-9+/=])*(?:\r?\n\Z)?')
BTAG = re.compile(rb'([;\s]b\s*=)(?:\s*[a-zA-Z0-9+/=]+)*(?:\r?\n\Z)?')
_pythonBtag = getattr(dkim, "RE_BTAG", None)


# dkimpy splits the whole message into lines with a regex, header and body,
# and joins the body's lines again with CRLF.  This reads the header lines
# one by one and keeps the body as it is when all its line ends are CRLF
# already (what SMTP gives us), which is the same bytes; the results and
# the errors are dkimpy's (a Hypothesis test compares both).
_FIELD_NAME = re.compile(rb"([\x21-\x7e]+?):")
_LINE_END = re.compile(rb"\r?\n")
_pythonParse = getattr(dkim, "rfc822_parse", None)


def rfc822Parse(message):
    headers = []
    pos, size = 0, len(message)
    bodyStart = None
    while pos <= size:
        nl = message.find(b"\n", pos)
        if nl < 0:
            line, following = message[pos:], size + 1
        else:
            line, following = message[pos:nl], nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
        if not line:
            bodyStart = following
            break
        if line[0] in (0x09, 0x20):
            headers[-1][1] += line + b"\r\n"
        else:
            m = _FIELD_NAME.match(line)
            if m is not None:
                headers.append([m.group(1), line[m.end(0):] + b"\r\n"])
            elif not line.startswith(b"From "):
                raise dkim.MessageFormatError("Unexpected characters in RFC822 header: %s" % line)
        pos = following
    if bodyStart is None:
        return headers, b""
    body = message[bodyStart:]
    if body.count(b"\n") != body.count(b"\r\n"):
        body = _LINE_END.sub(b"\r\n", body)  # bare LF line ends, as dkimpy's join makes them
    return headers, body


# What install() replaces: (module, name, its parameters in dkimpy 1.1.x, ours);
# for a compiled pattern, its pattern instead of parameters.
def _replacements():
    return [
        (dkim, "RSASSA_PKCS1_v1_5_sign", ("hash", "private_key"), _opensslSign),
        (dkim, "RSASSA_PKCS1_v1_5_verify", ("hash", "signature", "public_key"), _opensslVerify),
        (dkim, "parse_pem_private_key", ("data",), _parsePrivate),
        (dkim, "evaluate_pk", ("name", "s"), _evaluate),
        (dkim.canonicalization, "compress_whitespace", ("content",), compressWhitespace),
        (dkim.canonicalization, "strip_trailing_whitespace", ("content",), stripTrailingWhitespace),
        (dkim.canonicalization, "unfold_header_value", ("content",), unfoldHeaderValue),
        (dkim, "RE_BTAG", _BTAG_PATTERN, BTAG),
        (dkim, "rfc822_parse", ("message",), rfc822Parse),
    ]


# The fallbacks our replacements call: dkimpy's own functions, taken at import.
_ORIGINALS = {"RSASSA_PKCS1_v1_5_sign": _pythonSign, "RSASSA_PKCS1_v1_5_verify": _pythonVerify,
              "parse_pem_private_key": getattr(dkim.crypto, "parse_pem_private_key", None),
              "evaluate_pk": _pythonEvaluate, "compress_whitespace": _pythonCompress,
              "strip_trailing_whitespace": _pythonStripTrailing, "RE_BTAG": _pythonBtag,
              "rfc822_parse": _pythonParse,
              "unfold_header_value": _pythonUnfold}


def mismatches() -> list:
    """What in this dkimpy differs from what the replacements expect ([] = all as expected)."""
    problems = []
    for module, name, params, ours in _replacements():
        current = getattr(module, name, None)
        if current is ours:
            continue  # installed already
        if isinstance(params, bytes):  # a compiled pattern: the same pattern as in the tested versions
            if getattr(current, "pattern", None) != params:
                problems.append(f"{module.__name__}.{name} is missing or another pattern")
            continue
        if current is None or not callable(current):
            problems.append(f"{module.__name__}.{name} is missing")
            continue
        if _ORIGINALS.get(name) is None:
            problems.append(f"dkimpy's own {name} is missing")
            continue
        try:
            found = tuple(inspect.signature(current).parameters)
        except (TypeError, ValueError):
            found = None
        if found != params:
            problems.append(f"{module.__name__}.{name}{found} is not {name}{params}")
    return problems


def _version():
    try:
        from importlib.metadata import version

        return version("dkimpy")
    except Exception:
        return "(version unknown)"


_installed = None  # None: not tried yet; then True or False


def install() -> bool:
    """
    Put the replacements where dkimpy looks them up (idempotent).  All or
    none: when this dkimpy's names or parameters differ from the tested
    versions', nothing is replaced and one warning is logged.

    @return: whether the replacements are in place.
    """
    global _installed
    if _installed is not None:
        return _installed
    problems = mismatches()
    if problems:
        _installed = False
        log.warn("dkimpy {version} differs from the versions mailnet's speed-ups were tested with "
                 "({problems}); using plain dkimpy (slower, same results)",
                 version=_version(), problems="; ".join(problems))
        return False
    for module, name, _, ours in _replacements():
        setattr(module, name, ours)
    _installed = True
    return True
