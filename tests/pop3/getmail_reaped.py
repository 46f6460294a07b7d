"""
Run the installed getmail, with one fix to getmail itself: the parent
reaps each delivery child with ``waitpid()``.

Usage: ``python3 getmail_reaped.py /usr/bin/getmail ARGS...`` (with the
Python that getmail's ``#!`` line names).

Why: getmail6 up to 6.19 (this machine has 6.18.11) forks its delivery
child first and installs its SIGCHLD handler afterwards
(``ForkingBase.forkchild``, then ``_prepare_child``).  A child that exits
in between (the parent descheduled for a moment after ``fork()``, as on a
loaded machine) is never noticed: the parent waits the retriever's
``timeout`` (180 s) for a signal that came already.  The message is in
the Maildir; the server saw ``RETR 1`` and nothing after.  (getmail6
issues 226 and 245; later versions start the child through
multiprocessing.)  Only the old API is patched; a fixed getmail runs as is.
"""

import os
import runpy
import sys

from getmailcore import baseclasses
from getmailcore.exceptions import getmailOperationError


def _prepareChild(self):
    """No SIGCHLD handler: :func:`_waitForChild` reaps the child itself."""


def _waitForChild(self, childpid):
    _, status = os.waitpid(childpid, 0)
    if os.WIFSIGNALED(status):
        raise getmailOperationError("child pid %d killed by signal %d" % (childpid, os.WTERMSIG(status)))
    return os.WEXITSTATUS(status)


if "_prepare_child" in baseclasses.ForkingBase.forkchild.__code__.co_names:
    baseclasses.ForkingBase._prepare_child = _prepareChild
    baseclasses.ForkingBase._wait_for_child = _waitForChild

if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # this directory: nothing of ours shadows getmail's imports
    getmail = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(getmail, run_name="__main__")
