"""
The Maildir store's tuning constants, in one place (read at use, so tests
can change them).
"""

# How many expunges the sidecar keeps for QRESYNC after compaction.
KEEP_EXPUNGED = 10000
# A directory changed less than this long ago may change again within the
# same timestamp tick; list it again next time (Dovecot: MAILDIR_SYNC_SECS).
DIR_SETTLE_SECS = 1.5
# .tmp/ files older than this are leftovers of a crash.
TMP_MAX_AGE = 36 * 3600
# Empty delivery files made ahead of time (refilled below the low mark).
TMP_POOL_SIZE = 32
TMP_POOL_LOW = 8
# Rewrite dovecot-uidlist / the sidecar when they hold this many more lines
# than twice what is live.
UIDLIST_SLACK = 1000
MODLOG_SLACK = 5000
