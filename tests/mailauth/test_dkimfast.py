"""
dkimfast replaces dkimpy functions by name; a dkimpy whose names or
parameters differ must leave dkimpy untouched (all or nothing), with one
warning, and signing and verifying must still work with plain dkimpy.
"""

from __future__ import annotations

import dkim
import dkim.canonicalization
import pytest

from mailnet.mailauth import dkimcheck, dkimfast, dkimsign, keys

from tests.mailauth.test_dkim import MESSAGE

NAMES = [(m, name) for m, name, _, _ in dkimfast._replacements()]


class Warnings:
    def __init__(self):
        self.lines = []

    def warn(self, text, **fields):
        self.lines.append(text.format(**fields))


@pytest.fixture
def plainDkimpy(monkeypatch):
    """dkimpy as it comes (our replacements taken out), install() not yet run, warnings recorded."""
    for module, name in NAMES:
        monkeypatch.setattr(module, name, dkimfast._ORIGINALS[name])
    monkeypatch.setattr(dkimfast, "_installed", None)
    recorded = Warnings()
    monkeypatch.setattr(dkimfast, "log", recorded)
    return recorded


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("data"))
    keys.make(data, "a.test", "rsa1", "rsa")
    found = keys.loadAll(data)["a.test"]
    answers = {f"{k.selector}._domainkey.a.test": [keys.txtValue(k.algorithm, keys.publicKey(k.algorithm, k.private)).encode()]
               for k in found}
    return found, answers


def test_the_installed_dkimpy_is_the_tested_one(plainDkimpy):
    assert dkimfast.mismatches() == []
    assert dkimfast.install() is True and dkimfast.install() is True
    assert dkim.RSASSA_PKCS1_v1_5_sign is dkimfast._opensslSign
    assert dkim.canonicalization.compress_whitespace is dkimfast.compressWhitespace
    assert plainDkimpy.lines == []


@pytest.mark.parametrize("change", ["missing", "signature"])
def test_a_different_dkimpy_is_left_alone_with_one_warning(plainDkimpy, keyring, monkeypatch, change):
    if change == "missing":  # a dkimpy that renamed evaluate_pk
        monkeypatch.delattr(dkim, "evaluate_pk")
    else:  # a dkimpy whose signing function takes other parameters
        monkeypatch.setattr(dkim, "RSASSA_PKCS1_v1_5_sign", lambda hash, private_key, salt=None: None)
    before = {name: getattr(module, name, None) for module, name in NAMES}
    assert dkimfast.install() is False
    assert dkimfast.install() is False  # dkimsign and dkimcheck both call it: still one warning
    assert {name: getattr(module, name, None) for module, name in NAMES} == before  # nothing replaced
    [warning] = plainDkimpy.lines
    expected = "dkim.evaluate_pk is missing" if change == "missing" else "dkim.RSASSA_PKCS1_v1_5_sign("
    assert "using plain dkimpy" in warning and expected in warning, warning
    if change == "missing":
        monkeypatch.setattr(dkim, "evaluate_pk", dkimfast._ORIGINALS["evaluate_pk"], raising=False)
        # plain dkimpy still signs and verifies
        found, answers = keyring
        signed = dkimsign.sign(MESSAGE, found) + MESSAGE
        assert dkim.RSASSA_PKCS1_v1_5_sign is dkimfast._pythonSign
        [result] = dkimcheck.verifyAll(signed, answers)
        assert result.result == "pass"
