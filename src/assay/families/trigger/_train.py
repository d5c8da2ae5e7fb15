"""The training loop shared by base training and fine-tuning: AdamW, linear warmup, resumable.

    history = train_loop(model, tok, examples, evals, settings, run)

Each epoch shuffles with a generator seeded from ``settings.seed``, steps AdamW over batches
(loss on the answer tokens only, ``_lm.answer_loss``), and writes a checkpoint (the trainable
weights, optimizer, schedule, generator state and history) to the run's checkpoint dir. A
killed run resumes from the last finished epoch with the same batches it would have seen.
Evaluation runs before the first epoch, every ``eval_every_epochs`` and after the last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ._evaluate import EvalSet, evaluate
from ._lm import answer_loss, collate

if TYPE_CHECKING:
    from ._lm import CausalLM


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    lr: float
    batch_size: int
    warmup_fraction: float
    weight_decay: float
    eval_every_epochs: int
    max_grad_norm: float
    seed: int
    generation: bool = False  # also greedy-generation accuracy at each evaluation
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    keep = ("n", "accuracy", "loss", "generation_accuracy", "per_trigger")
    return {name: {k: r[k] for k in keep if k in r} for name, r in results.items()}


def train_loop(
    model: CausalLM,
    tok: Any,
    examples: Sequence[tuple[list[int], list[int]]],
    evals: Sequence[EvalSet],
    settings: TrainSettings,
    run: Any,
) -> dict[str, Any]:
    """Train ``model`` in place; returns the history (also saved in every checkpoint)."""
    from transformers import get_linear_schedule_with_warmup

    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    sched = get_linear_schedule_with_warmup(opt, round(settings.warmup_fraction * total), total)
    gen = torch.Generator().manual_seed(settings.seed)
    history: dict[str, Any] = {"epochs": [], "steps_per_epoch": steps_per_epoch}
    start = 0

    state = run.load_checkpoint()
    if state is not None:
        missing = set(trainable_state(model)) - set(state["model"])
        if missing:
            raise RuntimeError(f"checkpoint lacks trainable weights {sorted(missing)[:5]}")
        model.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        history, start = state["history"], state["epoch"]
        run.log(f"resumed from the checkpoint after epoch {start}")
    bar = run.progress(settings.epochs, "epoch", start=start)  # resumed: "resumed at epoch e"
    if state is None and evals:
        bar.note("evaluating before training")
        _record(history, 0, None, [], evaluate(model, tok, evals, settings.generation, bar), run)

    if settings.gradient_checkpointing:
        # use_reentrant=False: gradients reach LoRA adapters under a frozen embedding too
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    for epoch in range(start + 1, settings.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(len(examples), generator=gen).tolist()
        losses = []
        batches = bar.inner(steps_per_epoch, "batch")
        for a in range(0, len(order), settings.batch_size):
            batch = collate(
                [examples[i] for i in order[a : a + settings.batch_size]], tok.pad_token_id
            )
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                use_cache=False,
            ).logits  # (B, T, V)
            loss = answer_loss(logits, batch["labels"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            opt.step()
            sched.step()
            losses.append(loss.item())
            batches.update()
        train_loss = sum(losses) / len(losses)
        results = None
        if evals and (epoch % settings.eval_every_epochs == 0 or epoch == settings.epochs):
            bar.note("evaluating")
            results = evaluate(model, tok, evals, settings.generation, bar)
        _record(history, epoch, train_loss, losses, results, run, time.perf_counter() - t0)
        run.save_checkpoint(
            {
                "epoch": epoch,
                "model": trainable_state(model),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "history": history,
            }
        )
        bar.update()
    bar.close()
    model.eval()
    return history


def _record(
    history: dict[str, Any],
    epoch: int,
    train_loss: float | None,
    losses: list[float],
    results: dict[str, dict[str, Any]] | None,
    run: Any,
    seconds: float = 0.0,
) -> None:
    entry: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": train_loss,
        "batch_losses": losses,
        "seconds": seconds,
    }
    scalars: dict[str, float] = {} if train_loss is None else {"train_loss": train_loss}
    if results is not None:
        entry["eval"] = _summary(results)
        for name, r in results.items():
            if r["n"]:
                scalars[f"{name}/accuracy"] = r["accuracy"]
                scalars[f"{name}/loss"] = r["loss"]
    history["epochs"].append(entry)
    run.log_metrics(step=epoch, **scalars)
