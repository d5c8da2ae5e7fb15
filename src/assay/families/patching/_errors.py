"""The family's error type is the patching engine's (an AssayError: printed without a traceback)."""

from __future__ import annotations

from assay.ml.patching import PatchingError as PatchingError
