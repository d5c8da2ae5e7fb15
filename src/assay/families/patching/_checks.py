"""Plan-time check of ``patching.run``: its files and indices, before anything runs.

Refused with exit 2 and nothing recorded (see assay.engine._checks): an agent folder with zero
or two model files, a ``.zip`` that is not a stable-baselines3 agent, empty definitions, a
``start_index``/``end_index`` past the definitions (also from a finished ``prepared`` run's
recorded ``n_definitions``), NaN or infinite inputs, a ``readout_position`` outside the token
sequences, ``logit_diff`` outputs that are equal or out of range, and (without
``trust_checkpoint``) an SB3 agent only its unpickling loader rebuilds or a model folder whose
``auto_map`` names code of its own (``_sb3.safe_plan``, ``check_no_remote_code``). Read from cheap metadata:
the zip's ``data`` entry, a model folder's ``config.json``, the definitions and input files.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from assay import PlanContext
from assay.ml import check_no_remote_code

from ._models import agent_file
from ._sb3 import safe_plan

SB3_ENTRIES = ("data", "policy.pth")  # what stable-baselines3's save() always writes


def check_run(config: Any, plan: PlanContext) -> None:
    n_outputs = _check_model(config) if config.model is not None else None
    _check_logit_diff(config, n_outputs)
    if config.definitions is not None:
        _check_range(
            config,
            _count_definitions(config.definitions.path),
            f"the definitions file {config.definitions.path}",
        )
    elif config.prepared is not None and (done := plan.finished(config.prepared)) is not None:
        n = (done.results or {}).get("n_definitions")
        if isinstance(n, int):
            _check_range(config, n, f"the prepared run {done.id}")
    if config.model is None and config.prepared is not None and not config.trust_checkpoint:
        done = plan.finished(config.prepared)
        agent = Path(done.dir) / "artifacts" / "agent.zip" if done and done.dir else None
        if agent is not None and agent.is_file():
            safe_plan(agent)  # the upstream's agent.zip, as the run will load it
    if config.inputs:
        _check_inputs(config)


def _check_model(config: Any) -> int | None:
    """The model's number of outputs where cheap to know (SB3 Discrete, HF vocabulary)."""
    path = Path(config.model.path)
    if path.is_dir() and not (path / "config.json").is_file():
        path = agent_file(path)  # refuses zero or several model files, naming them
    if (path / "config.json").is_file():
        # a folder naming code of its own (auto_map) is refused here, before anything runs
        check_no_remote_code(path, trusted=config.trust_checkpoint, flag="--trust-checkpoint")
        try:
            vocab = json.loads((path / "config.json").read_text()).get("vocab_size")
        except ValueError:
            return None
        return vocab if isinstance(vocab, int) else None
    if config.model_kind == "sb3" or (config.model_kind == "auto" and path.suffix == ".zip"):
        n_outputs = _sb3_outputs(path)
        if not config.trust_checkpoint:
            safe_plan(path)  # an agent only SB3's unpickling loader rebuilds: refused now
        return n_outputs
    return None


def _sb3_outputs(path: Path) -> int | None:
    why = None
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = [e for e in SB3_ENTRIES if e not in names]
            if missing:
                why = f"it has no {' and no '.join(missing)} entry (it holds {sorted(names)[:6]})"
            else:
                data = json.loads(z.read("data"))
    except zipfile.BadZipFile:
        why = "it is not a zip file"
    except ValueError:
        why = "its 'data' entry is not JSON"
    if why is not None:
        raise ValueError(
            f"model {str(path)!r} is not a stable-baselines3 agent: {why}; give the .zip that "
            "model.save(PATH) wrote (or model_kind: torch / hf for other models)"
        )
    action = data.get("action_space") if isinstance(data, dict) else None
    if isinstance(action, dict) and str(action.get(":type:", "")).endswith(".Discrete'>"):
        try:
            return int(action["n"])
        except (KeyError, TypeError, ValueError):
            return None
    return None


def _check_logit_diff(config: Any, n_outputs: int | None) -> None:
    if config.logit_diff is None:
        return
    a, b = config.logit_diff
    if a == b:
        raise ValueError(
            f"logit_diff compares output {a!r} with itself (always 0); give two different "
            "outputs, e.g. logit_diff: [0, 1]"
        )
    if n_outputs is None:
        return
    bad = [i for i in (a, b) if isinstance(i, int) and not -n_outputs <= i < n_outputs]
    if bad:
        raise ValueError(
            f"logit_diff output(s) {bad} out of range: the model has {n_outputs} outputs, "
            f"valid indices 0..{n_outputs - 1} (or negative from the end): fix logit_diff"
        )


def _count_definitions(path: str) -> int:
    from assay.ml.patching import load_definitions

    return len(load_definitions(path))


def _check_range(config: Any, n: int, source: str) -> None:
    if n == 0:
        raise ValueError(f"{source} holds no definitions; give at least one patch definition")
    if config.start_index >= n:
        raise ValueError(
            f"start_index {config.start_index} is past the end: {source} holds {n} definitions "
            f"(valid start_index: 0..{n - 1}); lower start_index"
        )
    if config.end_index is not None and config.end_index > n:
        raise ValueError(
            f"end_index {config.end_index} is past the end: {source} holds {n} definitions "
            f"(valid end_index: {config.start_index + 1}..{n}, or null for all); lower end_index"
        )


def _check_inputs(config: Any) -> None:
    from ._inputs import _read

    lengths: list[int] = []
    for ref in config.inputs:
        raw = _read(Path(ref.path))
        bad = _nonfinite(raw)
        if bad:
            raise ValueError(
                f"input file {ref.path} holds {bad} NaN or infinite value(s); patching compares "
                "outputs of finite inputs: fix or drop those rows"
            )
        lengths += _token_lengths(raw)
    pos = config.readout_position
    if lengths and not -min(lengths) <= pos < min(lengths):
        shortest = min(lengths)
        raise ValueError(
            f"readout_position {pos} is outside the token sequences (the shortest has "
            f"{shortest} tokens): valid positions are {-shortest}..{shortest - 1}; fix "
            "readout_position (-1: the last token)"
        )


def _nonfinite(obj: Any) -> int:
    """How many NaN/inf numbers ``obj`` holds (arrays, tensors, lists, dicts, JSON numbers)."""
    if hasattr(obj, "numpy") and not isinstance(obj, np.ndarray):
        obj = obj.detach().cpu().numpy()  # a torch tensor from a .pt file
    if isinstance(obj, np.ndarray):
        return int((~np.isfinite(obj)).sum()) if obj.dtype.kind in "fc" else 0
    if isinstance(obj, float):
        return 0 if np.isfinite(obj) else 1
    if isinstance(obj, dict):
        return sum(_nonfinite(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_nonfinite(v) for v in obj)
    return 0


def _token_lengths(raw: Any) -> list[int]:
    """Lengths of integer token sequences in the file (2-D integer arrays); none for vectors."""
    out = []
    arrays = raw.values() if isinstance(raw, dict) else ()
    for a in arrays:
        a = a.detach().cpu().numpy() if hasattr(a, "detach") else a
        if isinstance(a, np.ndarray) and a.ndim == 2 and a.dtype.kind in "iu":
            out.append(int(a.shape[1]))
    return out
