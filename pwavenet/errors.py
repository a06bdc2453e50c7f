"""The one exception type that the command line turns into a one-line message."""

from __future__ import annotations


class PwavenetError(Exception):
    """A user-facing error: its message is one line that names the file and the cause.

    The CLI prints it as ``pwavenet: error: <message>`` and exits non-zero, without a traceback.
    """


class ConfigError(PwavenetError):
    """A configuration file or override is unreadable, has an unknown key or a wrong type."""


class AudioError(PwavenetError):
    """An audio file cannot be used (unreadable, empty, non-finite, silent, ...)."""


class DataError(PwavenetError):
    """A corpus or feature cache is missing, empty or was made with other settings."""


class CorpusError(PwavenetError):
    """The corpus cannot be made: the one-line message names the path or argument and the cause."""
