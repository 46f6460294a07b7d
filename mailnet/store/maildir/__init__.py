"""
The Maildir++ store, compatible with Dovecot's on-disk format.

Layout (see ``docs/store.md`` for the details and Dovecot compatibility)::

    <root>/.tmp/                    message data being received
    <root>/<domain>/<localpart>/    one account = INBOX (cur/ new/ tmp/)
        dovecot-uidlist             UIDs (Dovecot format, version 3)
        dovecot-keywords            keyword letters a..z
        mailnet-modseq              our sidecar: modseqs, dates, sizes
        mailnet-threads.sqlite      thread index (threads.py), account-wide
        mailnet-changes.sqlite      change journal (journal.py), account-wide
        subscriptions               Dovecot "V 2" format
        .Archive.2024/              folder "Archive/2024" (+ maildirfolder)

Threads.  Every blocking call (fsync, rename, listdir, reading the index
files) runs through ``runner`` (default: a private thread pool), except
opening a message at the name the index knows (and reading it whole when
it is small): that is done on the caller's thread, because a thread-pool
round trip costs ten times the open itself; the reads of message bodies
happen on the caller's thread anyway.  A name that is gone (another
program renamed or deleted the file) is looked for by a worker.  The
reactor side keeps a mirror of each open folder's index and applies
*deltas* that the worker threads produce under the folder lock, in order
(each delta carries a per-folder sequence number).  Operations on one
folder run one at a time, in the order they were asked for (a per-folder
queue); the thread side also holds an in-process lock plus Dovecot's
``dovecot-uidlist.lock`` dotlock for every change, so other processes
(another mailnet, Dovecot) are kept out too.

UIDs are assigned at commit, under the dotlock: the commit Deferred fires
with UIDs that are already in ``dovecot-uidlist`` on disk.  Files that other
programs drop into new/ or cur/ get UIDs at the next open or refresh.

Group commit.  Deliveries and APPENDs go through one committer, which
hands them to worker threads: a commit goes out at once when no worker is
busy; commits arriving meanwhile wait and go together to the next free
worker (or to another one once eight wait).  A worker writes what the
reactor did not (a message under 128 KiB is only ever in memory on the
reactor side), fsyncs each file (data and mtime), and then places them
into each target folder through that folder's group commit: the first
worker there takes the lock once, links the files into new/ (or cur/ when
flags are given), appends all their ``dovecot-uidlist`` records and
sidecar lines in one write each, fsyncs the directory once and releases
the lock -- for its own messages and those of every worker that arrived
meanwhile (they wait, and one of them leads the next round).

Modules, one job each::

    store.py      MaildirStore (IMailStore), makeStore, the registry of folders
    account.py    MaildirAccount: folders and subscriptions of one account
    delivery.py   MaildirDelivery (IDelivery), APPEND, the .tmp/ file pool
    commit.py     the group committer (worker threads)
    index.py      the reactor-side mirror of an open folder; per-folder queue
    disk.py       the thread side of one folder: index files, load, sync
    scan.py       listing new/ and cur/, reconciling them with the index
    ops.py        flag changes, expunge, copy/move, adding and reading messages
    state.py      the thread-side index, write batches, deltas for the reactor
    locks.py      in-process lock + Dovecot dotlock, several folders at once
    files.py      shared index-file I/O and dovecot-uidlist
    modlog.py     our mailnet-modseq sidecar
    locate.py     findEmail: the account's email ids, from the uidlists
    journal.py    account state and changes, taken in from the folders' sidecars
    listindex.py  the message list index's file and folder stamps (see store/summaries.py)
    keywords.py   dovecot-keywords and flag letters
    names.py      message file names and sizes
    layout.py     folder directories, new folders, subscriptions
    dotlock.py    Dovecot-compatible dotlocks
    crlf.py       reading message files (LF files served as CRLF through mail.lines)
    tuning.py     the tuning constants
"""

from mailnet.store.maildir.store import MaildirStore, makeStore

__all__ = ["MaildirStore", "makeStore"]
