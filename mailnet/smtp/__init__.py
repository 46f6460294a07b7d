"""
mailnet's ESMTP server (MX reception and authenticated submission).

``parser`` (wire grammar, message bodies) and ``session`` (state machine)
do no I/O; ``server`` is the thin Twisted protocol; ``delivery`` fans a
message out to the store and the outbound spool; ``errors.DeliveryError``
is the delivery outcome type shared with the queue.  See docs/smtp.md.
"""
