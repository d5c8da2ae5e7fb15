"""assay's own training loop, recording dynamics the reference's way.

    task = ClassificationTask(model, encoder, rows, labels)     # or QATask(model, windows)
    history, dyn = train(task, opts, epsilon, weight, recorder) # dyn: Dynamics or None

Per batch: forward in train mode (dropout on), strategy loss, and *then* -- before
``optimizer.step()`` -- the batch's gold-label probabilities go to the recorder (``train_pass``,
what allenai/cartography records). ``eval_pass`` instead re-scores every training example at the
end of each epoch with dropout off. Recording is a softmax and a scatter into preallocated
buffers on the training device: no per-batch host sync.

Memory: a batch that runs out of device memory is redone as micro-batches of half the size,
their gradients accumulated (each weighted by its share of the batch), so the optimizer still
steps on ``batch_size`` examples; the history's ``micro_batch`` says what one forward held.
``gradient_checkpointing`` trades recomputation for activation memory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from assay import ConfigError
from assay.ml import AdaptiveBatch

from ._dynamics import DynamicsRecorder
from ._models import classifier_logits
from ._qa import QAWindows
from ._strategies import strategy_loss


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int  # batch order
    device: str
    record: str | None  # "train_pass" | "eval_pass" | None
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory


# What frees training memory when even one example per forward runs out of it.
TRAIN_HINTS = "gradient_checkpointing: true, dtype: bfloat16, a smaller model or shorter inputs"


def checkpointing(model) -> None:
    """Turn on a transformers model's gradient checkpointing (activations recomputed in the
    backward pass: about a third more compute for memory that no longer grows with depth)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"gradient_checkpointing: true needs a transformers model that supports it; "
            f"{type(model).__name__} does not. Use model.kind: hf (or from_config), or set "
            "gradient_checkpointing: false"
        )
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


class ClassificationTask:
    """Examples are texts; one row (token ids) per example."""

    def __init__(self, model, encoder, rows: list[list[int]], labels: np.ndarray) -> None:
        self.model, self.encoder, self.rows = model, encoder, rows
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, idx: torch.Tensor, device: str):
        inputs = self.encoder.collate([self.rows[i] for i in idx.tolist()])
        return {k: v.to(device) for k, v in inputs.items()}, self.labels[idx].to(device)

    def forward(self, inputs):
        return classifier_logits(self.model, inputs)  # (B, K)

    def loss(self, out, target, eps, w):
        return strategy_loss(out, target, eps, w)

    def record(self, rec: DynamicsRecorder, epoch: int, idx, out, target) -> None:
        rec.record(epoch, idx, out, target)


class QATask:
    """Items are windows; start/end logits over the window's positions."""

    def __init__(self, model, windows: QAWindows) -> None:
        self.model, self.win = model, windows
        self.t = {
            k: torch.as_tensor(getattr(windows, k))
            for k in ("input_ids", "token_type_ids", "attention_mask", "start", "end")
        }

    def __len__(self) -> int:
        return len(self.win.start)

    def batch(self, idx, device):
        inputs = {
            k: self.t[k][idx].to(device) for k in ("input_ids", "token_type_ids", "attention_mask")
        }
        return inputs, (self.t["start"][idx].to(device), self.t["end"][idx].to(device))

    def forward(self, inputs):
        out = self.model(**inputs)
        mask = inputs["attention_mask"] == 0  # padding can never be an answer boundary
        return (out.start_logits.masked_fill(mask, -1e4), out.end_logits.masked_fill(mask, -1e4))

    def loss(self, out, target, eps, w):
        return (
            strategy_loss(out[0], target[0], eps, w) + strategy_loss(out[1], target[1], eps, w)
        ) / 2

    def record(self, rec: DynamicsRecorder, epoch: int, idx, out, target) -> None:
        ps = torch.softmax(out[0].float(), -1).gather(1, target[0][:, None]).squeeze(1)
        pe = torch.softmax(out[1].float(), -1).gather(1, target[1][:, None]).squeeze(1)
        correct = (out[0].argmax(-1) == target[0]) & (out[1].argmax(-1) == target[1])
        rec.record_probs(epoch, idx, torch.sqrt(ps * pe), correct)  # geometric mean


def train(
    task,
    opts: TrainOptions,
    epsilon: np.ndarray,
    weight: np.ndarray,
    recorder: DynamicsRecorder | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    bar=None,
) -> dict:
    """Train ``task.model`` in place; returns the history (and fills ``recorder``).

    ``bar``: the run's progress counter (``run.progress(opts.epochs, "epoch")``); the batches of
    each epoch are counted inside it.
    """
    model = task.model.to(opts.device)
    opts_list = optimizers(model, opts)
    eps_t = torch.as_tensor(epsilon, dtype=torch.float32, device=opts.device)
    w_t = torch.as_tensor(weight, dtype=torch.float32, device=opts.device)
    smooth, weigh = bool((epsilon != 0).any()), bool((weight != 1).any())
    gen = torch.Generator().manual_seed(opts.seed)
    history: dict[str, list] = {"epoch": [], "train_loss": [], "epoch_s": [], "micro_batch": []}
    sizer = AdaptiveBatch(None, knob="batch_size", what="example", hints=TRAIN_HINTS)
    if opts.gradient_checkpointing:
        checkpointing(model)
    n = len(task)
    for epoch in range(opts.epochs):
        model.train()
        t0, total = time.perf_counter(), torch.zeros((), device=opts.device)
        order = torch.randperm(n, generator=gen)
        batches = bar.inner(math.ceil(n / opts.batch_size), "batch") if bar is not None else None
        for start in range(0, n, opts.batch_size):
            idx = order[start : start + opts.batch_size]

            def step(m: int, idx: torch.Tensor = idx, epoch: int = epoch) -> torch.Tensor:
                """Gradients of the batch's mean loss, accumulated over micro-batches of m
                examples (all of it in one when it fits); returns the summed loss."""
                for opt in opts_list:
                    opt.zero_grad(set_to_none=True)
                summed = torch.zeros((), device=opts.device)
                for a in range(0, len(idx), m):
                    part = idx[a : a + m]
                    inputs, target = task.batch(part, opts.device)
                    out = task.forward(inputs)
                    dev_idx = part.to(opts.device)
                    loss = task.loss(
                        out,
                        target,
                        eps_t[dev_idx] if smooth else None,
                        w_t[dev_idx] if weigh else None,
                    )  # the micro-batch's mean
                    if recorder is not None and opts.record == "train_pass":
                        task.record(recorder, epoch, part, out, target)  # before the step
                    (loss * (len(part) / len(idx))).backward()  # a share of the batch mean
                    summed += loss.detach() * len(part)
                return summed

            # the optimizer always steps on batch_size examples; only what one forward holds
            # shrinks after an out-of-memory (micro_batch in the history)
            total += sizer.run(step, len(idx))
            for opt in opts_list:
                opt.step()
            if batches is not None:
                batches.update()
        if recorder is not None and opts.record == "eval_pass":
            if bar is not None:
                bar.note("recording dynamics")
            score_all(task, opts, functools.partial(_record_into, task, recorder, epoch))
        history["epoch"].append(epoch)
        history["train_loss"].append(float(total) / n)
        history["epoch_s"].append(time.perf_counter() - t0)
        history["micro_batch"].append(sizer.used)  # examples per forward that really ran
        if on_epoch is not None:
            on_epoch(epoch, {k: v[-1] for k, v in history.items()})
        if bar is not None:
            bar.update()
    return history


def optimizers(model, opts: TrainOptions) -> list[torch.optim.Optimizer]:
    """AdamW, and lazy (sparse) Adam for sparse embedding tables: a dense Adam step over a
    30k-word table per batch made the bag of words 10x slower than its forward/backward."""
    sparse = [
        p
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding | torch.nn.EmbeddingBag) and m.sparse
        for p in m.parameters()
    ]
    ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in ids]
    out: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(dense, lr=opts.lr, weight_decay=opts.weight_decay)
    ]
    if sparse:
        out.append(torch.optim.SparseAdam(sparse, lr=opts.lr))
    return out


def _record_into(task, recorder, epoch, idx, out, target) -> None:
    task.record(recorder, epoch, idx, out, target)


@torch.no_grad()
def score_all(task, opts: TrainOptions, sink: Callable, batch_size: int = 512) -> None:
    """Forward every item with dropout off and hand (idx, out, target) to ``sink``."""
    model = task.model
    was = model.training
    model.eval()

    def score(a: int, b: int) -> None:
        idx = torch.arange(a, b)
        inputs, target = task.batch(idx, opts.device)
        sink(idx, task.forward(inputs), target)

    # batch_size items per forward, halved on out-of-memory (no gradients: 512 rarely fails)
    AdaptiveBatch(batch_size, knob="batch_size", what="example", hints=TRAIN_HINTS).map(
        len(task), score
    )
    model.train(was)


def predict(task, opts: TrainOptions):
    """Outputs for every item, on the CPU: logits (N, K), or (start, end) each (W, T)."""
    parts: list = []
    score_all(task, opts, lambda idx, out, target: parts.append(out))
    if isinstance(parts[0], tuple):
        return tuple(torch.cat([p[i] for p in parts]).float().cpu().numpy() for i in range(2))
    return torch.cat(parts).float().cpu().numpy()
