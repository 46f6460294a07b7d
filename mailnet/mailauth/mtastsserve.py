"""
Our own MTA-STS policy (RFC 8461 s3.2), served at
``/.well-known/mta-sts.txt`` on the http listener when ``[mtasts]
serve_mode`` is not ``off``.  The listener must be reached as
``https://mta-sts.<domain>`` with a valid certificate for that name (the TLS
proxy in front does that); ``mailnet dns`` prints the matching TXT record.
"""

from __future__ import annotations

from mailnet.mailauth import mtasts

POLICY_PATH = b"/.well-known/mta-sts.txt"


def servedPolicy(config) -> str | None:
    """The policy text we serve, or None when ``serve_mode`` is off."""
    settings = config.mtasts
    if settings.serve_mode == "off":
        return None
    mxs = [m.lower().rstrip(".") for m in settings.serve_mx] or [config.server.hostname.lower().rstrip(".")]
    mxs = [] if settings.serve_mode == "none" and not settings.serve_mx else mxs
    return mtasts.policyText(settings.serve_mode, mxs, min(settings.serve_max_age, mtasts.MAX_AGE_LIMIT))


def routes(config) -> dict:
    """The http listener's route for the policy (see :class:`mailnet.http.site.Router`); {} when off."""
    text = servedPolicy(config)
    if text is None:
        return {}
    body = text.encode()

    def policy(request, rest):
        from twisted.web import server

        from mailnet.http import site

        if not site.allowMethods(request, b"GET", b"HEAD"):
            return server.NOT_DONE_YET
        request.setResponseCode(200)
        # RFC 8461 s3.3: media type text/plain; no redirects.
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"max-age=300")
        request.setHeader(b"content-length", b"%d" % len(body))
        return b"" if request.method == b"HEAD" else body

    return {POLICY_PATH: policy}
