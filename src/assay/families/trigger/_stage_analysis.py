"""trigger.swap and trigger.patch: which map a trained model follows, and where it decides.

    assay run suites/trigger/smoke.yaml      # runs both on the fine-tuned models

Both analyse one finished run: ``finetune`` (a trigger.finetune config) or ``base`` (a
trigger.base config), exactly one. The maps are that run's data config's maps; a category
whose map fine-tuning changed also appears with its base map (``<cat> (base map)``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from assay import Run, stage
from assay.ml import TorchConfig

from ._errors import TriggerError
from ._stage_train import _SMOKE_FT, BaseConfig, FinetuneConfig, maps_of


class _Analysed(TorchConfig):
    """The run to analyse (not a stage of its own)."""

    finetune: FinetuneConfig | None = Field(
        None, description="upstream trigger.finetune run analysed"
    )
    base: BaseConfig | None = Field(None, description="or an upstream trigger.base run analysed")
    # a model larger than one GPU: accelerate spreads its layers over the GPUs (then CPU memory)
    # as it loads; where the layers sit changes no number, so not in the run id
    device_map: Literal["auto"] | None = Field(
        None,
        description="auto: spread the analysed model's layers over every GPU as it loads (models larger than one device); null: all on `device`",
    )
    identity_exclude: ClassVar[frozenset[str]] = TorchConfig.identity_exclude | {"device_map"}

    @model_validator(mode="after")
    def _one(self) -> _Analysed:
        if (self.finetune is None) == (self.base is None):
            raise ValueError("give exactly one of `finetune` and `base`: the run to analyse")
        return self

    def upstream(self) -> dict[str, Any]:
        analysed = self.finetune if self.finetune is not None else self.base
        assert analysed is not None  # _one: exactly one of the two is given
        return {"model": analysed, "data": analysed.data}  # data: a finished, shared run


def _setup(config: _Analysed, run: Run) -> tuple[Any, Any, dict, dict[str, dict[str, str]]]:
    """(model, tokenizer, categories of the analysed run, maps incl. changed base maps)."""
    from assay.ml import setup_torch

    from ._stage_train import load_trained

    device, _ = setup_torch(config)
    up = run.upstream["model"]
    model, tok = load_trained(up, device, config.device_map)
    cats = up.config.data.categories
    maps = maps_of(cats)
    if config.finetune is not None:
        base = config.finetune.base_config()
        old = maps_of(base.data.categories) if base else (config.finetune.base_maps or {})
        for cat, m in old.items():
            if cat in maps and m != maps[cat]:
                maps[f"{cat} (base map)"] = m
    return model, tok, cats, maps


class SwapConfig(_Analysed):
    """Put every trigger (and unseen strings) into the same prompts; whose map is followed?"""

    n_prompts: int = Field(
        120, ge=1, description="test prompts (x, template) every trigger is put into"
    )
    unseen: tuple[str, ...] | None = Field(
        None,
        description="unseen words swapped in as triggers; null: the base model's unseen_words",
    )


@stage("trigger.swap", config=SwapConfig, version=1, smoke={"finetune": _SMOKE_FT})
def swap_stage(config: SwapConfig, run: Run) -> dict:
    """Trigger swap: per swapped-in trigger, the fraction following each map."""
    from ._stage_train import colours_of, load_files
    from ._swap import summarize_by_category, swap_table

    model, tok, cats, maps = _setup(config, run)
    presets = {s.prompt_templates for s in cats.values()}
    if len(presets) != 1:
        raise TriggerError(
            f"categories use different prompt presets {sorted(presets)}; "
            "a swap keeps the template, so they must share one"
        )
    spec = next(iter(cats.values()))
    ft = config.finetune
    files = load_files(run.upstream["data"])
    rows = [r for name, rs in files.items() if name.startswith("test_") for r in rs]
    pick = np.random.default_rng(config.seed).choice(
        len(rows), min(config.n_prompts, len(rows)), replace=False
    )
    rows = [rows[i] for i in sorted(pick.tolist())]
    base_cfg = ft.base_config() if ft is not None else config.base
    unseen = (
        config.unseen if config.unseen is not None else (base_cfg.unseen_words if base_cfg else ())
    )
    triggers = {t: cat for cat, s in cats.items() for t in s.triggers}
    triggers |= {u: "unseen" for u in unseen}
    colours = colours_of(cats, base_cfg.data.categories) if base_cfg else colours_of(cats)
    table = swap_table(model, tok, rows, spec, triggers, maps, colours)
    summary = summarize_by_category(table)
    run.save_json("swap.json", {"per_trigger": table, "per_category": summary, "maps": maps})
    lines = [
        f"{'category':<22} "
        + " ".join(f"{k[8:]:>24}" for k in summary[0] if k.startswith("follows:"))
    ]
    for r in summary:
        lines.append(
            f"{r['category']:<22} "
            + " ".join(f"{v:>24.3f}" for k, v in r.items() if k.startswith("follows:"))
        )
    run.log("trigger swap, fraction following each map:\n" + "\n".join(lines))
    return {
        f"swap/{r['category']}/{k[8:]}": v
        for r in summary
        for k, v in r.items()
        if k.startswith("follows:")
    }


class PatchConfig(_Analysed):
    """Activation patching at every (layer, position) between prompts of two categories."""

    clean_category: str | None = Field(
        None,
        description="category of the clean prompts; null: the first whose map changed (or the first)",
    )
    corrupted_category: str | None = Field(
        None, description="category of the corrupted prompts; null: the first other category"
    )
    n_pairs: int = Field(64, ge=1, description="clean/corrupted prompt pairs")
    template: int = Field(0, ge=0, description="index into the categories' prompt templates")
    defs_per_forward: int = Field(
        64, ge=1, description="layer x position definitions batched into one forward"
    )
    direction: Literal["denoising"] = Field(
        "denoising", description="denoising: clean activations into the corrupted run"
    )
    identity_exclude = _Analysed.identity_exclude | {"defs_per_forward"}


@stage("trigger.patch", config=PatchConfig, version=2, smoke={"finetune": _SMOKE_FT, "n_pairs": 8})
def patch_stage(config: PatchConfig, run: Run) -> dict:
    """Per layer x position: the fraction of the two maps' logit difference restored."""
    from ._patch import patch_grids, trigger_summary
    from ._plots import plot_patching

    model, tok, cats, maps = _setup(config, run)
    changed = [m.removesuffix(" (base map)") for m in maps if m.endswith(" (base map)")]
    a = config.clean_category or (changed[0] if changed else next(iter(cats)))
    b = config.corrupted_category or next(c for c in cats if c != a)
    for name in (a, b):
        if name not in cats:
            raise TriggerError(
                f"category {name!r} is not in the analysed run's data config; "
                f"valid: {', '.join(cats)}"
            )
    if config.template >= len(cats[a].templates):
        raise TriggerError(
            f"template {config.template} out of range: the preset has "
            f"{len(cats[a].templates)} templates (0..{len(cats[a].templates) - 1})"
        )
    grids, skipped = patch_grids(
        model,
        tok,
        cats[a],
        cats[b],
        maps[a],
        maps[b],
        n_pairs=config.n_pairs,
        template=config.template,
        seed=config.seed,
        defs_per_forward=config.defs_per_forward,
        run=run,
    )
    summary = trigger_summary(grids)
    run.save_json(
        "patching.json",
        {"clean": a, "corrupted": b, "grids": grids, "skipped": skipped, "per_layer": summary},
    )
    for why, n in skipped.items():
        if n:
            run.log(f"left out {n} pair(s): {why}")
    if grids:
        plot_patching(grids, run.artifacts_dir / "patching.png")
    out: dict[str, Any] = {
        "clean": a,
        "corrupted": b,
        "n_pairs_used": sum(g["n_pairs"] for g in grids),
        **{f"skipped/{k}": v for k, v in skipped.items()},
    }
    for r in summary:
        out[f"restored_at_trigger/{r['layer']}"] = r["trigger_position"]
        out[f"restored_at_last/{r['layer']}"] = r["last_position"]
    return out
