"""Sinks: log every run to the trackers researchers already use (wandb, mlflow, tensorboard),
as plug-ins registered through the ``assay.sinks`` entry-point group."""

from ._base import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from ._base import Sink as Sink
from ._base import SinkContext as SinkContext
from ._base import SinkError as SinkError
from ._base import group_name as group_name
from ._base import parse_sinks as parse_sinks
from ._base import safe_name as safe_name
from ._base import seed_free_group as seed_free_group
from ._base import sink_class as sink_class
from ._base import sink_names as sink_names
from ._set import SinkSet as SinkSet
from ._set import open_sinks as open_sinks
from ._set import probe as probe
from ._set import record_problems as record_problems
from ._set import recorded_problems as recorded_problems
from ._set import replay as replay
