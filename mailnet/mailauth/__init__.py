"""
Mail authentication: DKIM signing (RFC 6376, ed25519 per RFC 8463), SPF
(RFC 7208), DKIM verification and DMARC (RFC 7489) on mail received, the
result as one Authentication-Results header (RFC 8601).

The maintained libraries do the work, each behind one small module:

* :mod:`.keys`      DKIM keys under data_dir/dkim (make, load, the TXT record)
* :mod:`.dkimsign`  signing with dkimpy (relaxed/relaxed, oversigned headers)
* :mod:`.dkimcheck` verification with dkimpy, key records fetched beforehand
* :mod:`.spfcheck`  pyspf, its DNS answered by twisted.names from a worker thread
* :mod:`.dmarc`     the DMARC record, alignment and policy (organizational
                    domains from the Public Suffix List of ``publicsuffixlist``)
* :mod:`.results`   the Authentication-Results header with ``authres``
* :mod:`.dnsquery`  twisted.names lookups (TXT prefetch; the blocking adapter)
* :mod:`.checks`    the inbound checks of one message, and their verdict
* :mod:`.filter`    the message filter SMTP's ``MessageDelivery`` calls
* :mod:`.records`   what ``mailnet dns DOMAIN`` prints

See docs/mailauth.md.
"""
