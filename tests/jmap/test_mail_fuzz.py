"""Hypothesis: arbitrary JSON arguments to the mail methods get an answer or an RFC error, never serverFail."""

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.jmap.mailhelp import MailSession, message

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(max_size=12)
    | st.sampled_from(["$seen", "F1", "M1", "#x", "receivedAt", "name", "inbox", "2026-01-01T00:00:00Z",
                       "AND", "OR", "NOT", "header:Subject:asText", "textBody", "keywords/$seen", "mailboxIds"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["inMailbox", "inMailboxOtherThan", "before", "after", "minSize", "maxSize", "hasKeyword",
                         "notKeyword", "subject", "from", "operator", "conditions", "property", "isAscending",
                         "name", "parentId", "role", "keywords", "mailboxIds", "keywords/$seen", "x"]),
        children, max_size=4),
    max_leaves=12)

ARGUMENTS = ["filter", "sort", "position", "anchor", "anchorOffset", "limit", "calculateTotal", "collapseThreads",
             "ids", "properties", "fetchTextBodyValues", "maxBodyValueBytes", "create", "update", "destroy",
             "ifInState", "sinceState", "maxChanges", "onDestroyRemoveEmails", "bodyProperties"]
METHODS = ["Email/query", "Email/get", "Email/set", "Email/changes", "Mailbox/get", "Mailbox/query", "Mailbox/set",
           "Mailbox/changes", "Thread/get", "Thread/changes"]

SESSION = MailSession()
SESSION.deliver(message("one"))
SESSION.deliver(message("two"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(METHODS), st.dictionaries(st.sampled_from(ARGUMENTS), json_values, max_size=4))
def test_mail_methods_never_fail_on_bad_arguments(method, arguments):
    name, answer, _ = SESSION.request((method, arguments))["methodResponses"][0]
    if name == "error":
        assert answer["type"] != "serverFail", (method, arguments, answer)
