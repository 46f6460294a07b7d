"""Serve LF-terminated message files (mutt, Dovecot's default) as CRLF."""

from __future__ import annotations

import errno
import io
import os
import stat

from mailnet.mail.lines import CHUNK, openCRLF, toCRLF

# Message files up to this size are read whole at open (open, fstat, one
# read, close: the descriptor is not kept), converted to CRLF if they have
# bare LFs, and served from a BytesIO.  Larger ones are streamed from the
# file, converted a chunk at a time when needed.
WHOLE_LIMIT = 128 * 1024


class NotRegularFile(OSError):
    """A name in new/ or cur/ is a directory, fifo, socket or device."""

    def __init__(self, path):
        super().__init__(errno.EINVAL, "not a regular file")


def readCanonical(path, size):
    """
    Open the message file at ``path`` whose canonical (CRLF) size the index
    says is ``size``, for reading from position 0.

    Small files are read whole (see :data:`WHOLE_LIMIT`) and come back as a
    BytesIO; larger ones as the open file itself when it is stored with CRLF
    already (its size is ``size``), else as a converting reader.  Raises
    OSError (FileNotFoundError when the name is gone; ELOOP for a symlink,
    :class:`NotRegularFile` for anything else that is not a regular file).
    """
    # A symlink is never followed (it could point anywhere, /etc/passwd
    # included) and a fifo must not block the opener: only regular files.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path)
        physical = st.st_size
        if physical <= WHOLE_LIMIT:
            # physical + 1: see the end of the file in the same call.
            data = os.read(fd, physical + 1)
            if len(data) != physical:
                # Changed under us (or a short read): read to the end.
                rest = [data]
                while True:
                    more = os.read(fd, CHUNK)
                    if not more:
                        break
                    rest.append(more)
                data = b"".join(rest)
            return io.BytesIO(data if len(data) == size else toCRLF(data))
        f = os.fdopen(fd, "rb")
        fd = -1
    finally:
        if fd >= 0:
            os.close(fd)
    if physical == size:
        return f
    return openCRLF(f)
