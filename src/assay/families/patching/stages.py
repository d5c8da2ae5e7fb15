"""Stages of the patching family.

    assay run suites/patching/cartpole_dqn_sharded.yaml --workers 2   # train, then 4 shards
    assay patching run --model agent.zip --inputs pairs.npz --definitions defs.json

``patching.cartpole_dqn`` trains the example agent and writes its input pairs and single-neuron
definitions; ``patching.run`` runs definitions ``[start_index, end_index)`` of a definitions
file over clean/corrupted pairs, either from files or from a ``prepared`` upstream run.

Identity: a config names files by path, and a file's content can change under the same path.
So ``model``, ``inputs`` and ``definitions`` are ``assay.ml.FileRef``s (path + sha256, the hash
filled in from the file when the config is built): the hash is part of the run id, so changed
content means a new run instead of a stale cached one, and the stage refuses to run if a file
changed after the config was made. An ``arch`` spec given as a file is read into the config.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from assay import Run, stage, suite_path
from assay.ml import FileRef, TorchConfig, setup_torch
from assay.ml.patching import check_kinds
from assay.ml.patching._defaults import DEFAULT_DEFS_PER_FORWARD

from ._checks import check_run
from ._errors import PatchingError


class CartPoleDQNConfig(TorchConfig):
    """Train the example DQN and write input pairs + single-neuron definitions for it."""

    train_steps: int = Field(
        20_000,
        ge=100,
        description="environment steps of DQN training (about 13 s on one thread; returns about 100-200)",
    )
    hidden: tuple[int, ...] = Field(
        (64, 64), description="widths of the Q-network's hidden layers"
    )
    n_pairs: int = Field(
        256,
        ge=1,
        description="clean/corrupted observation pairs written (the corrupted one mirrors the pole)",
    )
    # Every Linear layer. A ReLU after a Linear would only repeat its results: patching one
    # unit before or after an elementwise activation gives the same output.
    kinds: tuple[str, ...] = Field(
        ("linear",),
        description="module kinds whose units become single-neuron definitions (e.g. linear)",
    )
    include_output: bool = Field(
        True, description="also define patches on the output layer's units"
    )
    device: str = Field(
        "cpu",
        description="where the DQN trains; a 64x64 MLP trains faster on the CPU than through GPU launches",
    )
    num_threads: int = Field(
        1,
        ge=0,
        description="torch CPU threads; one is fastest for this tiny network (bench_patching.py)",
    )

    @field_validator("dtype")
    @classmethod
    def _float32_only(cls, dtype: str) -> str:
        if dtype != "float32":
            raise ValueError(
                f"dtype {dtype!r}: stable-baselines3 trains the agent in float32 only; "
                "leave dtype unset (patching.run has its own dtype for the patching)"
            )
        return dtype

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return check_kinds(kinds)
        except PatchingError as exc:
            raise ValueError(str(exc)) from None


@stage(
    "patching.cartpole_dqn",
    config=CartPoleDQNConfig,
    version=1,
    smoke={"train_steps": 600, "hidden": (16, 16), "n_pairs": 16},
)
def cartpole_dqn(config: CartPoleDQNConfig, run: Run) -> dict:
    """Train a CartPole DQN; write agent.zip, pairs.npz (mirrored pole) and definitions.json."""
    import numpy as np

    from assay.ml.patching import PROBE_BATCH, generate, probe_structure, save_definitions
    from assay.ml.patching import select_modules as select

    from ._cartpole import mirrored_pairs, rollout, steps_taken, train_dqn
    from ._models import load_model

    device, _ = setup_torch(config)
    with run.progress(steps_taken(config.train_steps), "env step") as bar:
        agent, train_s = train_dqn(
            config.train_steps, config.hidden, config.seed, device=device, counter=bar
        )
    with run.write_artifact("agent.zip") as tmp:
        agent.save(tmp)
    clean, mean_return = rollout(agent, config.n_pairs, seed=config.seed)
    with run.write_artifact("pairs.npz") as tmp:
        np.savez(tmp, clean=clean, corrupted=mirrored_pairs(clean), ids=np.arange(len(clean)))
    model = load_model(run.artifact("agent.zip"))
    structure = probe_structure(model, model.example_input(PROBE_BATCH))
    modules = select(structure, kinds=config.kinds, include_output=config.include_output)
    definitions = generate("single_neuron", modules)
    with run.write_artifact("definitions.json") as tmp:
        save_definitions(definitions, tmp)
    run.log(f"trained {config.train_steps} steps in {train_s:.1f}s; mean return {mean_return:.1f}")
    return {
        "train_s": train_s,
        "mean_return": mean_return,
        "n_definitions": len(definitions),
        "modules": {m.name: m.n_units for m in modules},
    }


class PatchingRunConfig(TorchConfig):
    """Run definitions [start_index, end_index) over clean/corrupted input pairs."""

    model: FileRef | None = Field(
        None, description="checkpoint, SB3 .zip or HF folder; null: the prepared agent"
    )
    model_kind: Literal["auto", "torch", "sb3", "hf"] = Field(
        "auto", description="how to load model; auto: from the file"
    )
    arch: dict[str, Any] | None = Field(
        None,
        description="architecture spec for a bare state dict (a JSON object, or a JSON file read in)",
    )
    trust_checkpoint: bool = Field(
        False,
        description="run code the model file names: a pickled nn.Module, a factory in its arch, an SB3 zip through SB3's own loader, a HF folder's auto_map",
    )
    inputs: list[FileRef] = Field(
        [], description="one pairs file, or [clean, corrupted]; empty: the prepared pairs"
    )
    definitions: FileRef | None = Field(
        None, description="JSON file of patch definitions; null: the prepared definitions"
    )
    prepared: CartPoleDQNConfig | None = Field(
        None,
        description="upstream patching.cartpole_dqn run that provides model, inputs and definitions",
    )
    start_index: int = Field(
        0, ge=0, description="first definition patched (for splitting a long list across runs)"
    )
    end_index: int | None = Field(
        None, ge=1, description="definition index to stop before; null: to the last"
    )
    direction: Literal["denoising", "noising", "both"] = Field(
        "denoising",
        description="denoising: clean activations into the corrupted run; noising: the reverse; both",
    )
    # exact: one patched forward per definition (batched); attribution: the gradient estimate
    # of `restored` for every definition from one forward + backward (assay.ml.patching).
    method: Literal["exact", "attribution"] = Field(
        "exact",
        description="exact: a patched forward per definition; attribution: gradient estimate from one forward and backward",
    )
    readout_position: int = Field(
        -1, description="token models: the position whose logits are the output (checked in range)"
    )
    logit_diff: tuple[int | str, int | str] | None = Field(
        None,
        description="two outputs (ids or tokens) whose logit difference is a metric; null: none",
    )
    metrics: tuple[str, ...] | None = Field(
        None, description="metrics computed (a subset of the patching metrics); null: all"
    )
    defs_per_forward: int = Field(
        DEFAULT_DEFS_PER_FORWARD, ge=1, description="definitions batched into one forward (K)"
    )
    max_batch_rows: int = Field(
        16384, ge=1, description="rows per forward (K x inputs); bounds memory"
    )
    reuse_prefix: bool = Field(
        True, description="replay cached outputs of the modules before the first patched one"
    )
    slice_positions: bool = Field(
        True, description="token models: run readout-only modules on the readout position only"
    )
    # How the work is batched changes the speed, not the numbers.
    identity_exclude: ClassVar[frozenset[str]] = TorchConfig.identity_exclude | {
        "defs_per_forward",
        "max_batch_rows",
        "reuse_prefix",
        "slice_positions",
    }

    @field_validator("arch", mode="before")
    @classmethod
    def _read_arch(cls, arch: Any, info: ValidationInfo) -> Any:
        """A spec given as a JSON string or a file (in a suite: the suite file's neighbour) is
        parsed here, so its content is the id."""
        if not isinstance(arch, str | Path):
            return arch
        text = str(arch)
        if not text.lstrip().startswith("{"):
            text = suite_path(text, info)
            if not Path(text).is_file():
                raise ValueError(f"arch file {text!r} does not exist; give a path or a JSON spec")
            try:
                text = Path(text).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"arch file {str(arch)!r} is not readable text: {exc}") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"arch {arch!r} is not a JSON object: {exc}") from None

    def code_named(self) -> list[str]:
        """A factory to call and a file trusted to unpickle: code that a suite or a run's
        config.json may not name on its own word (``assay.StageConfig.code_named``)."""
        named = []
        if isinstance(self.arch, dict) and self.arch.get("type") == "factory":
            named.append(
                f"arch factory {self.arch.get('factory')!r}, which would be imported and called "
                "(or give the spec on the command line: assay patching run --arch SPEC)"
            )
        if self.trust_checkpoint:
            named.append("trust_checkpoint: true, which runs code the model file names")
        return named

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        from assay.ml.patching import check_metric_names

        return check_metric_names(names)

    @model_validator(mode="after")
    def _check(self) -> PatchingRunConfig:
        missing = [n for n in ("model", "definitions") if getattr(self, n) is None]
        if self.prepared is None and (missing or not self.inputs):
            raise ValueError(
                f"missing {missing + ([] if self.inputs else ['inputs'])}: give model, inputs and "
                "definitions paths, or a `prepared` upstream (patching.cartpole_dqn) that makes them"
            )
        if len(self.inputs) > 2:
            raise ValueError(
                f"inputs takes 1 (pairs) or 2 (clean, corrupted) paths, got {self.inputs}"
            )
        if self.method == "attribution" and self.metrics is not None:
            extra = sorted(set(self.metrics) - {"restored", "gap", "normalised"})
            if extra:
                raise ValueError(
                    f"method attribution estimates restored (and gap, normalised) only; "
                    f"metrics {extra} need method exact"
                )
        if self.end_index is not None and self.end_index <= self.start_index:
            raise ValueError(
                f"end_index ({self.end_index}) must be > start_index ({self.start_index}); "
                "the shard is [start_index, end_index)"
            )
        return self


def _files(config: PatchingRunConfig, run: Run) -> tuple[str, list[str], str]:
    """The model, input and definition paths, each checked against its configured hash."""
    for ref in [config.model, config.definitions, *config.inputs]:
        if ref is not None:
            ref.verify()
    up = run.upstream.get("prepared")

    def made(name: str) -> str:
        assert up is not None  # the config's validator: a path not given comes from `prepared`
        return str(up.artifact(name))

    model = config.model.path if config.model else made("agent.zip")
    inputs = [r.path for r in config.inputs] or [made("pairs.npz")]
    definitions = config.definitions.path if config.definitions else made("definitions.json")
    return model, inputs, definitions


def _logit_diff(config: PatchingRunConfig, model: Any) -> tuple[int, int] | None:
    if config.logit_diff is None:
        return None
    out = []
    for item in config.logit_diff:
        if isinstance(item, int):
            out.append(item)
            continue
        ids = model.tokenizer.encode(item, add_special_tokens=False) if model.tokenizer else []
        if len(ids) != 1:
            raise PatchingError(
                f"logit_diff entry {item!r} is not a single token of the model's tokenizer; give an output index"
            )
        out.append(ids[0])
    return out[0], out[1]


@stage(
    "patching.run",
    config=PatchingRunConfig,
    version=1,
    check=check_run,
    smoke={"prepared": {"train_steps": 600, "hidden": (16, 16), "n_pairs": 16}},
)
def run_patching(config: PatchingRunConfig, run: Run) -> dict:
    """Patch each definition over all input pairs; one record per definition and direction."""
    import torch

    from assay.ml.patching import (
        PROBE_BATCH,
        BatchedPatcher,
        attribution_patch,
        load_definitions,
        probe_structure,
        undefined_counts,
    )

    from ._inputs import load_pairs
    from ._models import load_model
    from ._results import build_records, format_table, rank, resolve_metric, write_records

    device, dtype = setup_torch(config)
    threads = torch.get_num_threads()
    model_path, input_paths, defs_path = _files(config, run)
    t0 = time.perf_counter()
    model = load_model(
        model_path, config.model_kind, arch=config.arch, trust_checkpoint=config.trust_checkpoint
    )
    model.root.to(device=device, dtype=dtype)
    model.readout_position = config.readout_position
    pairs = load_pairs(input_paths, model)
    if model.input_kind == "vector":  # token ids stay int64
        pairs.clean, pairs.corrupted = pairs.clean.to(dtype), pairs.corrupted.to(dtype)
    undefined: dict[str, int] = {}
    everything = load_definitions(defs_path)
    if not everything:
        raise PatchingError(
            f"{defs_path} holds no definitions (an empty list); write some with "
            "`assay patching define --type single_neuron --model PATH -o defs.json`"
        )
    if config.start_index >= len(everything):
        raise PatchingError(
            f"start_index {config.start_index} is past the end: {defs_path} has "
            f"{len(everything)} definitions (valid start 0..{len(everything) - 1})"
        )
    if config.end_index is not None and config.end_index > len(everything):
        raise PatchingError(
            f"end_index {config.end_index} is past the end: {defs_path} has {len(everything)} "
            f"definitions (valid end {config.start_index + 1}..{len(everything)}, exclusive; "
            "leave it unset (null) for 'to the end')"
        )
    end = config.end_index or len(everything)
    definitions = everything[config.start_index : end]
    # Probe with the longest input (padded batches: the one without padding).
    row = int(pairs.lengths.argmax()) if pairs.lengths is not None else 0
    x = pairs.corrupted[row : row + 1]
    sample = x.repeat(PROBE_BATCH, *[1] * (x.dim() - 1))
    structure = probe_structure(model, sample.to(device))
    run.save_json("structure.json", structure.to_json())
    load_s = time.perf_counter() - t0

    patcher = BatchedPatcher(
        model,
        structure,
        defs_per_forward=config.defs_per_forward,
        max_batch_rows=config.max_batch_rows,
        reuse_prefix=config.reuse_prefix,
        slice_positions=config.slice_positions,
    )
    directions = ["denoising", "noising"] if config.direction == "both" else [config.direction]
    logit_diff = _logit_diff(config, model)
    outcomes, records = [], []
    bar = run.progress(len(directions), "direction")  # definitions x input batches inside
    for direction in directions:
        if config.method == "attribution":
            outcome = attribution_patch(
                model,
                structure,
                definitions,
                pairs,
                direction,
                logit_diff,
                max_batch_rows=config.max_batch_rows,
            )
        else:
            outcome = patcher.run(
                definitions,
                pairs,
                direction,
                logit_diff,
                config.metrics,
                counter=bar.inner(len(definitions), "definition"),
            )
        outcomes.append(outcome)
        bar.update()
        records += build_records(outcome, start_index=config.start_index, method=config.method)
        run.log(
            f"{direction} ({config.method}): {len(definitions)} definitions x {len(pairs)} pairs "
            f"in {outcome.n_forwards} forwards, {sum(outcome.timings.values()):.3f}s"
        )
        for name, count in undefined_counts(outcome.metrics).items():
            # Flag, warn and keep: NaN values are left out of means, never silently.
            run.log(
                f"WARNING: {direction} {name} undefined for {count} of "
                f"{outcome.metrics[name].numel()} (definition, input) values (the change is "
                "below the model's rounding noise, or a vector is zero); they are NaN in "
                "per_input.npz and excluded from the means (n_undefined in records.jsonl)"
            )
            undefined[f"n_undefined_{name}"] = undefined.get(f"n_undefined_{name}", 0) + count
    bar.close()
    files = write_records(run, records, outcomes)
    metric = resolve_metric(records)
    top = rank(records, metric, top=10)
    run.log(f"top units by mean |{metric}|:\n" + format_table(top))
    patch_s = sum(sum(o.timings.values()) for o in outcomes)
    return {
        "method": config.method,
        **undefined,
        "n_definitions": len(definitions),
        "n_inputs": len(pairs),
        "directions": directions,
        "definitions_range": [config.start_index, end],
        "n_forwards": sum(o.n_forwards for o in outcomes),
        **outcomes[-1].batch,  # inputs per forward that ran (smaller after an out-of-memory)
        "load_s": load_s,
        "patch_s": patch_s,
        "threads": threads,
        "device": device,
        "model": model.description,
        "files": files,
        "content_sha256": {
            r.path: r.sha256 for r in [config.model, config.definitions, *config.inputs] if r
        },
        "top": [
            {
                "index": r["index"],
                "label": r["label"],
                "direction": r["direction"],
                f"{metric}_mean": r["metrics"][metric]["mean"],
            }
            for r in top
        ],
    }
