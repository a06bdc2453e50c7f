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


class TrainingError(PwavenetError):
    """Training cannot go on (too many non-finite losses in a row, no intact checkpoint to
    resume from, a checkpoint or export that cannot be written)."""


class Stopped(PwavenetError):
    """Training stopped on a signal (SIGTERM, SIGINT) after writing a checkpoint; the command
    line prints the message and exits with ``exit_code``: 128 + the signal's number."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
