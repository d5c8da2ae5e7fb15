"""The engine: configs and their identity, suites and plans, the run handle and record,
the runner and its worker entry, options, the stage/family registry, provenance, atomic
files. Its public names are re-exported by ``assay``."""
