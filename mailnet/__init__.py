"""mailnet: a mail server framework on Twisted."""

__version__ = "0.1.0"
