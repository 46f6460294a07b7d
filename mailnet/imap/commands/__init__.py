"""
The IMAP commands by area, as mixin classes that
:class:`mailnet.imap.session.IMAPSession` combines: the session core keeps the
input, output, timers, dispatch and capabilities; each module here holds
the commands of one area and the helpers only they use.
"""
