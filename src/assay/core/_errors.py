"""Every error a user can cause derives from :class:`AssayError` and says what to do about it."""

from __future__ import annotations


class AssayError(Exception):
    """Base class: a problem the user can fix. The message names the bad value, the valid
    choices and the fix; the CLI prints it without a traceback and exits non-zero."""


class ConfigError(AssayError):
    """A config, override or sweep does not match the stage's config schema."""


class SuiteError(AssayError):
    """A suite file cannot be read or has the wrong shape."""


class StageNotFoundError(AssayError):
    """No registered stage or family has the requested name."""


class FamilyNotFoundError(StageNotFoundError):
    """No installed family has this name (a stage's family, or ``assay <family>``)."""


class StoreError(AssayError):
    """The run store cannot be opened, or its schema does not match this version of assay."""


class RunNotFoundError(AssayError):
    """No run with the requested id (or prefix) is recorded."""


class CheckpointError(AssayError):
    """A checkpoint holds something other than plain data (tensors, containers, numbers)."""
