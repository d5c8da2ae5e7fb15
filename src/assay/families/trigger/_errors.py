"""The trigger family's error: bad input a user can fix (a ConfigError, so the CLI exits 2)."""

from __future__ import annotations

from assay import ConfigError


class TriggerError(ConfigError):
    """A trigger-family input problem; the message names the value, the valid set and the fix."""
