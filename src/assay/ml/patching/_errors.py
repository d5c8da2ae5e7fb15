"""The patching engine's error type: an MLError (so an AssayError), printed without a traceback."""

from __future__ import annotations

from .._errors import MLError


class PatchingError(MLError):
    """A model, input or definition problem the user can fix; the message names the fix."""
