"""
Every method jmapc (a client we did not write) has, against the real server
through the TLS proxy it needs: each answer must parse into jmapc's own
response class, not an error, except where docs/jmap.md says why
(Email/copy within one account).  What other tests do not already cover
with jmapc: the /changes and /queryChanges of Mailbox, Email, Thread,
Identity and EmailSubmission, Mailbox/set, EmailSubmission/get and /query.
"""

import os

import pytest

from tests.http.test_real_submit import ALICE, draft, identity, makeServer, one
from tests.http.tlsproxy import TLSProxy
from tests.queue.e2e import Sink

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sink():
    s = Sink().start()
    yield s
    s.stop()


def test_every_jmapc_method_parses(tmp_path, sink):
    jmapc = pytest.importorskip("jmapc", reason="jmapc is in the test extra (pyproject.toml)")
    from jmapc import Comparator, Email, EmailQueryFilterCondition, EmailSubmission, Mailbox
    from jmapc import methods as M

    server = makeServer(tmp_path / "surface", sink)
    proxy = TLSProxy(server.port("http"), server.certFile, os.path.join(server.dataDir, "tls", "key.pem"))
    try:
        client = jmapc.Client.create_with_password(f"localhost:{proxy.port}", *ALICE)
        client.requests_session.trust_env = False
        client.requests_session.verify = os.path.join(server.dataDir, "tls", "dev-ca.pem")

        def call(method, expected):
            answer = client.request(method, raise_errors=False)
            assert isinstance(answer, expected), answer
            return answer

        newest = [Comparator(property="receivedAt", is_ascending=False)]
        boxes = call(M.MailboxGet(ids=None), M.MailboxGetResponse)
        call(M.MailboxSet(create={"n": Mailbox(name="Projects")}), M.MailboxSetResponse)
        assert call(M.MailboxChanges(since_state=boxes.state), M.MailboxChangesResponse).created
        query = call(M.MailboxQuery(), M.MailboxQueryResponse)
        call(M.MailboxQueryChanges(since_query_state=query.query_state), M.MailboxQueryChangesResponse)
        emails = call(M.EmailGet(ids=[]), M.EmailGetResponse)
        threads = call(M.ThreadGet(ids=[]), M.ThreadGetResponse)
        emailId = one(server, "Email/set", create={"e": draft(server)})["created"]["e"]["id"]
        assert call(M.EmailChanges(since_state=emails.state), M.EmailChangesResponse).created == [emailId]
        query = call(M.EmailQuery(sort=newest), M.EmailQueryResponse)
        call(M.EmailQueryChanges(since_query_state=query.query_state, sort=newest), M.EmailQueryChangesResponse)
        [email] = call(M.EmailGet(ids=[emailId], properties=["threadId"]), M.EmailGetResponse).data
        call(M.ThreadGet(ids=[email.thread_id]), M.ThreadGetResponse)
        call(M.ThreadChanges(since_state=threads.state), M.ThreadChangesResponse)
        identities = call(M.IdentityGet(ids=None), M.IdentityGetResponse)
        call(M.IdentitySet(update={identities.data[0].id: {"name": "Alice"}}), M.IdentitySetResponse)
        assert call(M.IdentityChanges(since_state=identities.state), M.IdentityChangesResponse).updated
        submissions = call(M.EmailSubmissionGet(ids=None), M.EmailSubmissionGetResponse)
        call(M.EmailSubmissionSet(create={"s": EmailSubmission(identity_id=identity(server), email_id=emailId)}),
             M.EmailSubmissionSetResponse)
        call(M.EmailSubmissionChanges(since_state=submissions.state), M.EmailSubmissionChangesResponse)
        query = call(M.EmailSubmissionQuery(), M.EmailSubmissionQueryResponse)
        # It cannot calculate changes, and says so (RFC 8620 s5.5): a client does not ask.
        assert query.can_calculate_changes is False
        call(M.SearchSnippetGet(ids=[emailId], filter=EmailQueryFilterCondition(text="Hello")),
             M.SearchSnippetGetResponse)
        # One account per user: Email/copy is refused as RFC 8620 s5.4 says (docs/rfcs.md).
        copy = client.request(M.EmailCopy(from_account_id=client.account_id, create={"c": Email(id=emailId)}),
                              raise_errors=False)
        assert type(copy).__name__ == "InvalidArguments"
    finally:
        proxy.close()
        server.stop()


def test_every_jmaplib_standard_method_parses(tmp_path, sink):
    # jmaplib validates each answer with its own models (pydantic): /get, /changes, /query, /queryChanges
    # of every type we serve, and PushSubscription/get without an account.
    pytest.importorskip("jmap", reason="jmaplib is in the test extra (pyproject.toml)")
    import ssl

    import httpx
    from jmap.client import JMAPClient

    server = makeServer(tmp_path / "jmaplib", sink)
    proxy = TLSProxy(server.port("http"), server.certFile, os.path.join(server.dataDir, "tls", "key.pem"))
    verify = ssl.create_default_context(cafile=os.path.join(server.dataDir, "tls", "dev-ca.pem"))
    client = JMAPClient.connect(f"https://localhost:{proxy.port}/.well-known/jmap", auth=httpx.BasicAuth(*ALICE),
                                http=httpx.Client(verify=verify, timeout=30))
    try:
        emailId = one(server, "Email/set", create={"e": draft(server)})["created"]["e"]["id"]

        def run(build):
            with client.batch() as batch:
                handle = build(batch)
            return handle.result

        for namespace, name, ids in (("mail", "mailbox", None), ("mail", "email", [emailId]),
                                     ("mail", "thread", ["T" + emailId]), ("submission", "identity", None),
                                     ("submission", "email_submission", None)):
            entity = lambda batch: getattr(getattr(batch, namespace), name)  # noqa: E731
            got = run(lambda batch: entity(batch).get(ids=ids))
            assert got.state
            assert run(lambda batch: entity(batch).changes(since_state=got.state)).has_more_changes is False
        for name in ("mailbox", "email"):
            query = run(lambda batch: getattr(batch.mail, name).query())
            run(lambda batch: getattr(batch.mail, name).query_changes(since_query_state=query.query_state))
        assert run(lambda batch: batch.submission.email_submission.query()).can_calculate_changes is False
        assert run(lambda batch: batch.vacation.vacation_response.get(ids=None)).items
        run(lambda batch: batch.quota.quota.get(ids=None))
        assert run(lambda batch: batch.mail.search_snippet.get(email_ids=[emailId], filter={"text": "Hello"})).items
        assert run(lambda batch: batch.core.push_subscription.get(ids=None)).items == []
    finally:
        client.close()
        proxy.close()
        server.stop()
