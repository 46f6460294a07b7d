"""session.py split by concern: the names other code imports from it are the new modules' objects."""

from mailnet.smtp import sasl, session, settings, states, transaction


def test_old_names_are_the_new_modules_objects():
    moved = (settings, states, transaction)
    found = 0
    for name in session.__all__:
        for module in moved:
            if hasattr(module, name):
                assert getattr(session, name) is getattr(module, name), name
                found += 1
    assert found == len(session.__all__) - 3  # all but SMTPSession, COMMANDS, BDAT_SLACK
    assert session.IncomingEnvelope.__module__ == "mailnet.smtp.transaction"


def test_auth_is_the_mixins():
    assert issubclass(session.SMTPSession, sasl.AuthCommands)
    assert session.COMMANDS["AUTH"] is sasl.AuthCommands.cmdAuth
    assert session.COMMANDS["MAIL"] is session.SMTPSession.cmdMail
