"""Errors of the ML layer; they are AssayErrors, so the CLI prints them without a traceback."""

from __future__ import annotations

from ..core._errors import AssayError, ConfigError


class MLError(AssayError):
    """A model, tokenizer, file or training problem the user can fix; the message names the fix."""


class ModelNotFoundError(MLError, ConfigError):
    """A model or tokenizer path that is not a local directory (assay never downloads)."""


class ContentChangedError(MLError):
    """A referenced file no longer has the content hash its run was configured with."""
