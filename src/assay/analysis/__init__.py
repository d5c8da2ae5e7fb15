"""Analysis of finished runs, above the engine and below the HTML report:

- :mod:`._frames`: runs -> one DataFrame row each; grouping and metric columns; export;
- :mod:`._stats`: intervals (Student's t, or Wilson / Clopper-Pearson for bounded metrics);
- :mod:`._summary`: per-group statistics; :mod:`._compare`: tests between groups;
- :mod:`._markdown`: plots, terminal tables and ``report.md`` (``assay analyze --out``);
- :mod:`._outputs`: which files an analysis owns in its ``--out`` folder.

Its public names are re-exported by ``assay`` (``assay.summarize``, ``assay.compare_groups``).
"""

from ._compare import compare_groups as compare_groups
from ._compare import holm as holm
from ._frames import CI_OUTSIDE_UNIT as CI_OUTSIDE_UNIT
from ._frames import CONFIDENCE as CONFIDENCE
from ._frames import NO_VARIATION as NO_VARIATION
from ._frames import RESERVED as RESERVED
from ._frames import SAME_DIFFERENCE as SAME_DIFFERENCE
from ._frames import SAME_IN_BOTH as SAME_IN_BOTH
from ._frames import export as export
from ._frames import flatten as flatten
from ._frames import group_columns as group_columns
from ._frames import group_labels as group_labels
from ._frames import is_info_key as is_info_key
from ._frames import load_runs as load_runs
from ._frames import metric_columns as metric_columns
from ._frames import parse_metrics as parse_metrics
from ._frames import records_frame as records_frame
from ._frames import seed_column as seed_column
from ._summary import known_bounds as known_bounds
from ._summary import metric_bounds as metric_bounds
from ._summary import parse_bounds as parse_bounds
from ._summary import summarize as summarize
