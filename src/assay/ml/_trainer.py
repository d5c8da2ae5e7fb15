"""Hugging Face ``Trainer`` inside an assay run: metrics to the run, checkpoints that resume.

    args = TrainingArguments(output_dir=str(trainer_output_dir(run)), save_steps=50,
                             save_total_limit=2, ...)            # retention: the last 2
    trainer = Trainer(model, args, callbacks=[MetricsCallback(run)], ...)
    trainer.train(resume_from_checkpoint=last_checkpoint(run))    # None on the first attempt

A killed run is rerun by the engine in the same run directory, so ``last_checkpoint`` finds what
the killed attempt saved and training goes on from there. A checkpoint counts only once its
``trainer_state.json`` exists: Trainer writes that file last, so a kill during a save leaves a
folder ``last_checkpoint`` skips (and the previous complete one is used). Trainer (5.x) reads
every checkpoint file with ``torch.load(weights_only=True)`` (its RNG state under an allow-list of
numpy types) or safetensors, so resuming runs no code from the files. peft adapters: save them
under ``adapter_dir(run)``.
"""

from __future__ import annotations

import math
import numbers
import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"  # written last by Trainer._save_checkpoint


def trainer_output_dir(run: Any) -> Path:
    """``run.checkpoint_dir / "trainer"``: pass it as ``TrainingArguments(output_dir=...)``."""
    path = Path(run.checkpoint_dir) / "trainer"
    path.mkdir(parents=True, exist_ok=True)
    return path


def adapter_dir(run: Any) -> Path:
    """``run.checkpoint_dir / "adapter"``: where a peft adapter is saved between attempts."""
    path = Path(run.checkpoint_dir) / "adapter"
    path.mkdir(parents=True, exist_ok=True)
    return path


def complete_checkpoints(folder: str | Path) -> list[Path]:
    """``checkpoint-N`` folders under ``folder`` holding a trainer_state.json, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _CHECKPOINT.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def last_checkpoint(run: Any) -> str | None:
    """The newest complete checkpoint of this run's Trainer, for ``resume_from_checkpoint``."""
    done = complete_checkpoints(Path(run.checkpoint_dir) / "trainer")
    return str(done[-1]) if done else None


class MetricsCallback(TrainerCallback):
    """Writes every ``on_log`` dict (loss, learning rate, eval metrics) to ``run.log_metrics``.

    Numbers only: strings and other values Trainer logs are left out. Non-finite numbers are
    kept (metrics.jsonl stores them as "nan"/"inf") so a diverged loss shows.
    """

    def __init__(self, run: Any) -> None:
        self.run = run

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any):
        if not state.is_world_process_zero or not logs:
            return
        values = {
            k: float(v)
            for k, v in logs.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)
        }
        if values:
            if "epoch" in values and not math.isfinite(values["epoch"]):
                values.pop("epoch")
            self.run.log_metrics(step=state.global_step, **values)
