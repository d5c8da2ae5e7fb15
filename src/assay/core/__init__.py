"""The bottom layer: errors, configs and their identity (the replicate rule), run records and
states, the run handle, the run spec (:class:`PlannedRun`), options, the stage/family registry,
atomic io and the root guard, device/seed helpers, provenance, the stale-code fingerprint, the
extras table. It imports nothing else of assay; its public names are re-exported by ``assay``."""
