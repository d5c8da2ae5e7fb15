"""Plan-time check of ``cartography.train``: its dynamics and clusters cover its examples.

Refused before anything runs (exit 2, nothing recorded): a ``dynamics_dir`` whose example ids
do not cover the training data, a ``dynamics:`` or ``cluster:`` upstream over other examples,
and a finished dynamics run whose ``dynamics.npz`` is gone. The example ids come from the data
(cached per data config, about a second for Rotten Tomatoes) and the reference files' ``guid``s;
they are read only when the data configs differ or a folder is given.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from assay import PlanContext

from ._dynamics import REFERENCE_DIR
from ._pipeline import train_ids


def check_strategy(config: Any, plan: PlanContext) -> None:
    if config.dynamics is not None:
        if config.dynamics.data != config.data:
            missing = _missing(_ids(config), _ids(config.dynamics))
            if missing:
                raise ValueError(
                    f"dynamics.data maps other examples than `data` trains on: "
                    f"{len(missing)} training ids are not in it (e.g. {missing[:3]}); give "
                    "`dynamics:` the same `data` (a YAML anchor: data: &data {...}, then "
                    "dynamics: {data: *data})"
                )
        done = plan.finished(config.dynamics)
        if done is not None and not _has_artifact(done, "dynamics.npz"):
            raise ValueError(
                f"the finished cartography.dynamics run {done.id} has no dynamics.npz (deleted?) "
                f"in {done.dir}; restore it, or remove {Path(done.dir or '.') / 'results.json'} "
                "and run `assay reindex --root ROOT` so the run is pending and runs again"
            )
    if config.dynamics_dir is not None:
        folder = config.dynamics_dir.path
        missing = _missing(_ids(config), _reference_ids(folder))
        if missing:
            raise ValueError(
                f"dynamics_dir {folder!r} covers other examples than `data` trains on: "
                f"{len(missing)} training ids have no dynamics (e.g. {missing[:3]}); give the "
                "folder a training run over this data wrote (its training_dynamics/)"
            )
    cluster = config.cluster
    if cluster is not None and cluster.data != config.data and _ids(config) != _ids(cluster):
        raise ValueError(
            "cluster.data clusters other examples than `data` trains on; give `cluster:` "
            "the same `data` (a YAML anchor: data: &data {...}, then cluster: {data: *data})"
        )


_IDS: dict[str, tuple[str, ...]] = {}  # data config JSON -> training ids, per process


def _ids(config: Any) -> tuple[str, ...]:
    """The training example ids of ``config``'s data (read once per data config)."""
    key = config.data.model_dump_json()
    if key not in _IDS:
        _IDS[key] = tuple(train_ids(config))
    return _IDS[key]


def _missing(wanted: tuple[str, ...], have: tuple[str, ...]) -> list[str]:
    present = set(have)
    return [i for i in wanted if i not in present]


@functools.lru_cache(maxsize=8)
def _reference_ids(folder: str) -> tuple[str, ...]:
    """The ``guid``s of epoch 0 of allenai/cartography's dynamics files in ``folder``."""
    root = Path(folder)
    if (root / REFERENCE_DIR).is_dir():
        root = root / REFERENCE_DIR
    first = root / "dynamics_epoch_0.jsonl"
    if not first.is_file():
        raise ValueError(
            f"dynamics_dir {folder!r} holds no dynamics_epoch_0.jsonl (nor {REFERENCE_DIR}/ "
            "with one); give the folder a cartography.dynamics run or allenai/cartography wrote"
        )
    ids = []
    with open(first, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    ids.append(str(json.loads(line)["guid"]))
                except (ValueError, KeyError, TypeError):
                    raise ValueError(
                        f"{first}:{n} is not a JSON object with a 'guid'; give a folder of "
                        "allenai/cartography dynamics files"
                    ) from None
    return tuple(ids)


def _has_artifact(record: Any, name: str) -> bool:
    return record.dir is not None and (Path(record.dir) / "artifacts" / name).is_file()
