"""The engine: suite loading and planning, plan checks, the runner and its worker entry, child
processes, progress, reindex, user imports and the options checked against the installed
executors and sinks. It sits above ``core``, ``store``, ``executors`` and ``sinks``; its public
names are re-exported by ``assay``."""
