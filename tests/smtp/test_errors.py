"""DeliveryError: the one delivery outcome type (shared with the queue)."""

import pytest

from mailnet.errors import DeliveryError, temporaryFailure


def test_temporary_and_permanent():
    assert temporaryFailure().temporary and temporaryFailure().code == 451
    e = DeliveryError(550, "5.1.1", "no such user")
    assert e.permanent and not e.temporary and str(e) == "550 5.1.1 no such user"


def test_class_of_enhanced_code_follows_the_reply_code():
    assert DeliveryError(451, "5.3.0", "x").enhanced == "4.3.0"
    with pytest.raises(ValueError):
        DeliveryError(250, "2.0.0", "not an error")


@pytest.mark.parametrize("code,text,expected", [
    (550, "5.1.1 <x@y>: Recipient address rejected\nUser unknown", ("5.1.1", "<x@y>: Recipient address rejected User unknown")),
    (451, "4.7.1 Try again later", ("4.7.1", "Try again later")),
    (554, "Transaction failed", ("5.0.0", "Transaction failed")),
    (421, "5.0.0 class mismatch", ("4.0.0", "5.0.0 class mismatch")),
])
def test_from_reply(code, text, expected):
    e = DeliveryError.fromReply(code, text)
    assert (e.enhanced, e.message) == expected and e.code == code


def test_one_type_for_smtp_and_queue():
    import mailnet.localdelivery
    import mailnet.smtp.delivery

    assert mailnet.smtp.delivery.DeliveryError is DeliveryError is mailnet.localdelivery.DeliveryError
