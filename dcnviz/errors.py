"""One domain error family, so the CLI and the app can show clean messages for expected failures.

Everything a user can cause (a bad file, a bad option, broken data) raises a subclass of
:class:`DcnvizError`; anything else is a bug and is allowed to crash loudly.
"""

from __future__ import annotations


class DcnvizError(ValueError):
    """Base class of every error dcnviz raises on purpose."""


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
