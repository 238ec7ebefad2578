"""The package's exceptions: one type per kind of bad input, all :class:`MobilenetsError`, a
``ValueError``. Each message is one sentence naming the problem and the fix; the command line prints it
and exits with status 2. Library internals (``IndexError``, ``KeyError``, ...) never reach a user for
input that is theirs to fix."""

from __future__ import annotations


class MobilenetsError(ValueError):
    """Input this package cannot use as given; the message says why and what to do."""


class ModelError(MobilenetsError):
    """An unknown model name or a build option outside its range."""


class WeightsError(MobilenetsError):
    """A weights file, name or source that cannot be loaded."""


class UnknownWeights(WeightsError):
    """A weights name that is not in the catalogue; the message lists the close ones."""


class DataError(MobilenetsError):
    """A dataset or folder of images that cannot be used as given."""


class BadImageError(DataError):
    """An image file that cannot be decoded."""


class PrecisionError(MobilenetsError):
    """A backend or precision that this CPU or runtime cannot keep."""


class RuntimeUnavailable(PrecisionError):
    """A runtime that cannot run here at all (Core ML's predictions off macOS)."""


class TrainingError(MobilenetsError):
    """Training that cannot start or go on (its settings, its output folder, a diverging loss)."""


class ExportError(MobilenetsError):
    """An export, deployment or benchmark that cannot be done as asked; nothing was written."""
