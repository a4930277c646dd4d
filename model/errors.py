"""The errors a user can cause. Each message is written to be shown on the page as it is (as text, not markdown)."""
from __future__ import annotations


class LabError(ValueError):
    """A problem the user can fix."""


class InputError(LabError):
    """Bad text or settings: empty, too long for the model, not usable by this model, out of range."""


class ModelLoadError(LabError):
    """The model could not be found, is not allowed by the server's link policy, or could not be loaded."""


class SamplingError(InputError):
    """A sampling setting or input that cannot work; the message says what is allowed."""


class NotSupported(LabError):
    """The model cannot do what was asked (e.g. a checkpoint without the head a page needs)."""
