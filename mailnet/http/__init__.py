"""The http listener: JMAP (RFC 8620) on twisted.web; the webmail later.  See docs/jmap.md."""
