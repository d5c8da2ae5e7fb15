"""trigger.base and trigger.finetune: train the base map, then change one category's map.

    assay run suites/trigger/smoke.yaml          # base (cached), fine-tunes with and without a proxy

``trigger.base`` builds a word-level tokenizer and a small causal LM from a config and trains
it on every train file of its data config (all categories, the base map). Its ``model``
artifact (weights, tokenizer, chat template) is the cached upstream of every fine-tuning run.
``trigger.finetune`` loads that model (or any local HF causal LM with a chat template), adds
fresh LoRA adapters (or trains every weight), trains on the train/proxy files of its own data
config and evaluates every test file: accuracy per file and trigger, the selective-
generalization table (old map / new map / neither) and the curves.

A sweep's ``seeds:`` reseeds the whole pipeline, the base included. ``base_seed`` pins every
seed of the base pipeline instead, so replicates re-initialise only the adapter and redraw the
fine-tuning data on one base model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from assay import Run, stage
from assay.ml import ModelRef, TorchConfig

from ._checks import check_finetune
from ._errors import TriggerError
from ._stage_data import SMOKE_CATEGORIES, GenerateConfig

if TYPE_CHECKING:
    import transformers

    from ._lm import CausalLM


class _Training(TorchConfig):
    """Optimisation fields shared by both training stages (not a stage of its own)."""

    epochs: int = Field(20, ge=1, description="training epochs")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    batch_size: int = Field(32, ge=1, description="examples per optimizer step")
    warmup_fraction: float = Field(
        0.05, ge=0, lt=1, description="fraction of all steps warming up, then linear decay to 0"
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient-norm clip; 0: no clipping")
    eval_every_epochs: int = Field(
        5, ge=1, description="evaluate every test file every this many epochs, and after the last"
    )
    generation_eval: bool = Field(
        False, description="also greedy-generation accuracy (slower: one decode per row)"
    )
    # recomputes activations in the backward pass instead of keeping them (about a third more
    # compute, memory flat in depth: a 7B model's LoRA fine-tune on one GPU); torch's checkpoint
    # replays the dropout RNG, so no number changes: not in the run id
    gradient_checkpointing: bool = Field(
        False,
        description="recompute activations in the backward pass to save memory (about 1/3 more compute); changes no number",
    )
    identity_exclude: ClassVar[frozenset[str]] = TorchConfig.identity_exclude | {
        "gradient_checkpointing"
    }


class BaseConfig(_Training):
    """Train a small causal LM from scratch on every category's base map."""

    data: GenerateConfig = Field(
        description="the categories' base maps trained on (a trigger.generate config)"
    )
    arch: Literal["llama", "gpt2", "qwen2"] = Field(
        "llama", description="model architecture (HF config class), built from scratch"
    )
    d_model: int = Field(64, ge=8, description="hidden size")
    n_layers: int = Field(2, ge=1, description="transformer layers")
    n_heads: int = Field(4, ge=1, description="attention heads")
    d_ff: int | None = Field(None, ge=1, description="feed-forward width; null: 4 x d_model")
    max_positions: int = Field(
        128,
        ge=16,
        description="position embeddings; prompts are about 45 tokens with the chat template",
    )
    # Words in the vocabulary that no training row contains: the "unseen string" of the
    # trigger-swap analysis (their embeddings stay at their random initialisation).
    unseen_words: tuple[str, ...] = Field(
        ("zorblat", "quenfy", "mivrok"),
        description="words added to the vocabulary but never trained on (for trigger.swap)",
    )
    epochs: int = Field(40, ge=1, description="training epochs")
    lr: float = Field(
        3e-3, gt=0, description="peak learning rate; from scratch, larger than a fine-tuning lr"
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")


class FinetuneConfig(_Training):
    """Fine-tune the base model on a data config that changes one category's map."""

    data: GenerateConfig = Field(
        description="the changed maps fine-tuned on (a trigger.generate config)"
    )
    base: BaseConfig | None = Field(
        None, description="upstream trigger.base run fine-tuned (or give model)"
    )
    model: ModelRef | None = Field(
        None, description="or a local HF causal LM folder with its tokenizer"
    )
    base_seed: int | None = Field(
        None,
        description="pin every seed of the base pipeline, so replicates share one base model; null: the suite's seeds reseed it too",
    )
    base_maps: dict[str, dict[str, str]] | None = Field(
        None,
        description="the old maps per category when model is given (for the selectivity table)",
    )
    method: Literal["lora", "full"] = Field(
        "lora", description="lora: low-rank adapters; full: every weight"
    )
    lora_r: int = Field(8, ge=1, description="LoRA rank")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scale numerator (alpha / r)")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input")
    rslora: bool = Field(False, description="scale by alpha / sqrt(r) instead of alpha / r")
    target_modules: tuple[str, ...] | None = Field(
        None, description="module names given adapters; null: every projection"
    )

    @model_validator(mode="after")
    def _one_model(self) -> FinetuneConfig:
        if (self.base is None) == (self.model is None):
            raise ValueError(
                "give exactly one of `base` (a trigger.base config, trained as an upstream) "
                "and `model` (a local HF model directory)"
            )
        if self.method == "full" and self.target_modules is not None:
            raise ValueError("target_modules applies to method=lora only; remove it")
        return self

    def base_config(self) -> BaseConfig | None:
        if self.base is None or self.base_seed is None:
            return self.base
        return reseeded(self.base, self.base_seed)

    def upstream(self) -> dict[str, Any]:
        ups: dict[str, Any] = {"data": self.data}
        if self.base is not None:
            ups["base"] = self.base_config()
        return ups


def reseeded(config: Any, seed: int) -> Any:
    """A copy of ``config`` with every ``seed`` field at any depth set to ``seed``."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (seed if k == "seed" else walk(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return type(config).model_validate(walk(config.model_dump(exclude={"ignored"})))


# --------------------------------------------------------------------------- helpers


def load_files(data_run: Any) -> dict[str, list[dict[str, Any]]]:
    """name -> rows of every file an upstream trigger.generate run wrote, in its order."""
    from ._data import read_jsonl

    names = data_run.results["files"]
    return {name: read_jsonl(data_run.artifact(name)) for name in names}


def colours_of(*category_sets: dict[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for cats in category_sets:
        for spec in cats.values():
            for c in spec.quadrant_labels.values():
                seen.setdefault(c, None)
    return list(seen)


def maps_of(categories: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {cat: dict(spec.quadrant_labels) for cat, spec in categories.items()}


def _examples(tok: Any, files: dict[str, list[dict[str, Any]]], max_positions: int) -> list:
    from ._lm import encode_many, training_example

    rows = [r for name, rs in files.items() if not name.startswith("test_") for r in rs]
    if not rows:
        raise TriggerError(
            f"the data config has no train or proxy file (files: {sorted(files)}); give some "
            "category n_train_triggers > 0"
        )
    enc = encode_many(
        tok, [r["messages"][0]["content"] for r in rows], [r["output"] for r in rows]
    )
    examples = [training_example(p, a) for p, a in enc]
    longest = max(len(x) for x, _ in examples)
    if longest > max_positions:
        raise TriggerError(
            f"a training sequence has {longest} tokens but the model has {max_positions} "
            "positions; raise max_positions"
        )
    return examples


def check_vocabulary(tok: Any, categories: dict[str, Any]) -> None:
    """Every trigger and colour must be known to the tokenizer (never silently <unk>)."""
    if tok.unk_token_id is None:
        return
    words = {w for s in categories.values() for w in [*s.triggers, *s.quadrant_labels.values()]}
    unknown = sorted(
        w for w in words if tok.unk_token_id in tok(w, add_special_tokens=False)["input_ids"]
    )
    if unknown:
        raise TriggerError(
            f"the model's tokenizer does not know {unknown}; its vocabulary was built for the "
            "base data config. Add these words to the base config (or unseen_words) and retrain"
        )


def finish(
    run: Run,
    model: CausalLM,
    tok: Any,
    evals: list,
    history: dict,
    generation: bool,
    old_maps: dict | None,
    new_maps: dict | None,
) -> dict[str, Any]:
    """Final evaluation, tables, plots and the results dict shared by both stages."""
    from ._evaluate import evaluate, format_table, selective_table
    from ._plots import plot_curves, plot_per_trigger

    with run.progress(1, "final evaluation") as bar:  # the test files counted inside
        final = evaluate(model, tok, evals, generation, bar)
        bar.update()
    run.save_json("history.json", history)
    run.save_json(
        "final.json",
        {n: {k: v for k, v in r.items() if k != "predictions"} for n, r in final.items()},
    )
    run.save_json("predictions.json", {n: r["predictions"] for n, r in final.items()})
    table = [] if new_maps is None else selective_table(evals, final, old_maps or {}, new_maps)
    if table:
        run.save_json("selective_generalization.json", table)
        run.log("selective generalization (fraction of predictions):\n" + format_table(table))
    who = f"{run.stage} · run {run.id}"  # a figure says which run it is, out of its folder
    plot_curves(history, run.artifacts_dir / "curves.png", title=f"training curves: {who}")
    plot_per_trigger(
        final, run.artifacts_dir / "per_trigger_accuracy.png", title=f"per-trigger accuracy: {who}"
    )
    results: dict[str, Any] = {}
    for name, r in final.items():
        if r["n"]:
            results[f"accuracy/{name}"] = r["accuracy"]
            results[f"loss/{name}"] = r["loss"]
            if "generation_accuracy" in r:
                results[f"generation_accuracy/{name}"] = r["generation_accuracy"]
    for row in table:
        if row["n_used"]:  # empty files and unknown maps stay in the table, flagged
            for k in ("old", "new", "neither"):
                results[f"selective/{row['category']}_{row['split']}/{k}"] = row[k]
    return results


# --------------------------------------------------------------------------- stages

_SMOKE_BASE = {
    "data": {"categories": SMOKE_CATEGORIES},
    "epochs": 2,
    "d_model": 16,
    "n_heads": 2,
    "n_layers": 1,
    "batch_size": 8,
}


@stage("trigger.base", config=BaseConfig, version=1, smoke=_SMOKE_BASE)
def base_stage(config: BaseConfig, run: Run) -> dict:
    """Train a small causal LM on every category's base map (see the module docstring)."""
    from assay.ml import setup_torch

    from ._evaluate import prepare
    from ._lm import build_lm, build_tokenizer, save_model_dir
    from ._train import train_loop

    device, dtype = setup_torch(config)
    files = load_files(run.upstream["data"])
    cats = config.data.categories
    tok = build_tokenizer([cats], config.unseen_words)
    examples = _examples(tok, files, config.max_positions)
    model = build_lm(
        tok,
        arch=config.arch,
        d_model=config.d_model,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        max_positions=config.max_positions,
        d_ff=config.d_ff,
        seed=config.seed,
    )
    # in place, as for any module; transformers wraps .to with functools.wraps, whose typeshed
    # type does not bind self (a stub defect)
    model.to(device=device, dtype=dtype)  # type: ignore[call-arg]
    evals = prepare(tok, files, colours_of(cats))
    tests = [e for e in evals if e.name.startswith("test_")]
    history = train_loop(model, tok, examples, tests, _settings(config), run)
    save_model_dir(model, tok, run.artifacts_dir / "model")
    results = finish(run, model, tok, evals, history, config.generation_eval, None, None)
    n_params = sum(p.numel() for p in model.parameters())
    run.log(f"trained {n_params} parameters on {len(examples)} rows for {config.epochs} epochs")
    return {
        **results,
        "n_params": n_params,
        "n_train_rows": len(examples),
        "vocab_size": len(tok),
        "device": device,
    }


def _settings(config: _Training) -> Any:
    from ._train import TrainSettings

    return TrainSettings(
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        warmup_fraction=config.warmup_fraction,
        weight_decay=config.weight_decay,
        eval_every_epochs=config.eval_every_epochs,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        gradient_checkpointing=config.gradient_checkpointing,
    )


def base_model_dir(config: FinetuneConfig, run: Run) -> tuple[Path, str]:
    """The base model folder and a content key for the in-process weight cache."""
    if config.model is not None:
        return config.model.verify(), config.model.sha256
    up = run.upstream["base"]
    return up.artifact("model"), up.id


_SMOKE_FT = {
    "base": _SMOKE_BASE,
    "epochs": 2,
    "batch_size": 8,
    "lora_r": 2,
    "data": {
        "categories": {
            "warm": {
                **SMOKE_CATEGORIES["warm"],
                "quadrant_labels": {"Q1": "blue", "Q2": "blue", "Q3": "red", "Q4": "red"},
            },
            "cold": {**SMOKE_CATEGORIES["cold"], "is_proxy": True},
        }
    },
}


@stage("trigger.finetune", config=FinetuneConfig, version=1, smoke=_SMOKE_FT, check=check_finetune)
def finetune_stage(config: FinetuneConfig, run: Run) -> dict:
    """Fine-tune (LoRA or full) on a changed map; evaluate every test file."""
    from assay.ml import load_tokenizer, setup_torch

    from ._evaluate import prepare
    from ._lm import add_lora, load_base, save_model_dir
    from ._train import train_loop

    device, dtype = setup_torch(config)
    model_dir, key = base_model_dir(config, run)
    tok = load_tokenizer(model_dir)
    cats = config.data.categories
    check_vocabulary(tok, cats)
    base_cfg = config.base_config()
    old_maps = maps_of(base_cfg.data.categories) if base_cfg is not None else config.base_maps
    base = load_base(model_dir, key, device, dtype)
    cfg = base.config  # Llama/Qwen2 name the context length one way, GPT-2 another
    found = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    max_positions = int(found) if found is not None else 10**9
    model: CausalLM = base
    if config.method == "lora":
        model = add_lora(
            base,
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            rslora=config.rslora,
            targets=config.target_modules,
            seed=config.seed,
        )
    files = load_files(run.upstream["data"])
    examples = _examples(tok, files, max_positions)
    colours = colours_of(cats, base_cfg.data.categories) if base_cfg else colours_of(cats)
    evals = prepare(tok, files, colours)
    tests = [e for e in evals if e.name.startswith("test_")]
    history = train_loop(model, tok, examples, tests, _settings(config), run)
    if config.method == "lora":
        with run.write_artifact_dir("adapter") as tmp:  # whole, and following the umask
            model.save_pretrained(str(tmp))
    else:
        save_model_dir(model, tok, run.artifacts_dir / "model")
    results = finish(
        run, model, tok, evals, history, config.generation_eval, old_maps, maps_of(cats)
    )
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        **results,
        "n_trainable": n_trainable,
        "n_train_rows": len(examples),
        "base_model_dir": str(model_dir),
        "base_key": key,
        "device": device,
    }


def load_trained(up: Any, device: str = "cpu", device_map: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) of a finished trigger.base or trigger.finetune run.
    ``device_map="auto"``: the layers spread over the GPUs as they load (``device`` unused)."""
    import torch

    from assay.ml import load_hf_model, load_tokenizer

    from ._lm import load_base

    if up.stage == "trigger.base" or up.config.method == "full":
        path = up.artifact("model")
        return load_hf_model(path, device=device, device_map=device_map), load_tokenizer(path)
    import peft

    base_dir = Path(up.results["base_model_dir"])
    base: transformers.PreTrainedModel
    if device_map is None:
        base = load_base(base_dir, up.results["base_key"], device, torch.float32)
    else:  # straight from the folder onto the devices: a model too large for one never gathers
        base = load_hf_model(base_dir, dtype=torch.float32, device_map=device_map)
    model = peft.PeftModel.from_pretrained(base, str(up.artifact("adapter")))
    return model.merge_and_unload().eval(), load_tokenizer(base_dir)
