"""
JMAP (RFC 8620) without I/O: the request parser and result references
(request.py), errors (errors.py), the method dispatcher and its registry
(dispatch.py), the core capability and session object (core.py), the
generic standard methods (standard.py), blobs (blobs.py) and push
(push.py).  The Twisted side is mailnet/http/.  See docs/jmap.md.
"""
