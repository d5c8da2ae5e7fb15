"""Analysis of finished runs: frames and loading, grouping by configuration, intervals and
tests, export, and the Markdown summary (``assay analyze --out``). Above the engine, below the
HTML report; its public names are re-exported by ``assay``."""
