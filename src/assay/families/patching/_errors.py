"""The one error type of the family; it is an AssayError, so the CLI prints it without a traceback."""

from __future__ import annotations

from assay import AssayError


class PatchingError(AssayError):
    """A model, input or definition problem the user can fix; the message names the fix."""
