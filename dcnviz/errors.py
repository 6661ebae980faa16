"""One domain error family, so the CLI and the app can show clean messages for expected failures.

Everything a user can cause (a bad file, a bad option, broken data) raises a subclass of
:class:`DcnvizError`; anything else is a bug and is allowed to crash loudly.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 4000  # a message quoting a file never prints more than this


class DcnvizError(ValueError):
    """Base class of every error dcnviz raises on purpose.

    Its text is bounded and printable whatever a file put into it: control characters other than
    newline and tab are escaped and the message is cut to :data:`MAX_MESSAGE_CHARS` characters (the
    places that quote a file cut each quote much shorter; this is the backstop for the CLI's stderr
    and the app's message box).
    """

    def __str__(self) -> str:
        text = super().__str__()
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[: MAX_MESSAGE_CHARS - 40] + f"… (message cut; {len(text):,} characters)"
        if not text.isprintable():
            text = "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)
        return text


class ConfigError(DcnvizError):
    """A model, training or feature configuration value is out of range."""


class DataFormatError(DcnvizError):
    """A data file is malformed; the message names the file and, where known, the line."""


class CheckpointError(DcnvizError):
    """A model file is corrupt, hostile, inconsistent or of an unknown format version."""


class ImportFormatError(CheckpointError):
    """A peer library's state dict does not match the key layout it was read as."""


class DownloadError(DcnvizError):
    """A dataset download failed (offline, bad checksum, unexpected contents)."""


class TrainingError(DcnvizError):
    """Training stopped on a fault (non-finite loss, out of memory)."""
