"""Training dynamics from a Hugging Face ``Trainer``: a callback, and the id column kept.

    cb = DynamicsCallback(train_ids)            # the dataset has an int column "example_idx"
    trainer = Trainer(model, args, train_dataset=ds)
    cb.attach(trainer)                          # keeps example_idx through column pruning
    trainer.train()
    cb.dynamics.save("dynamics.npz")            # or cb.dynamics.to_reference(DIR)

``example_idx`` holds each row's position in ``train_ids``. The Trainer drops every column its
model's ``forward`` does not name (``remove_unused_columns``): that is how the published system
lost its ids and silently turned loss weighting into a no-op. :meth:`attach` adds the column to
the Trainer's kept columns and takes it out of the model's inputs with a forward pre-hook; a
training forward that arrives without the column raises instead of recording nothing.

Recorded per batch in the training forward pass (train mode, before the optimizer step), as
``[n_examples, n_labels]`` per epoch; ``per_step=True`` also keeps every (step, example, prob)
row. Multiclass (integer labels) and multilabel (float multi-hot labels of the logits' shape).
``mode="eval_pass"`` re-scores the training set with dropout off at each epoch's end instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import TrainerCallback

from ._dynamics import Dynamics, DynamicsError, DynamicsRecorder

ID_COLUMN = "example_idx"


class DynamicsCallback(TrainerCallback):
    def __init__(
        self,
        ids: list[str],
        *,
        id_column: str = ID_COLUMN,
        mode: str = "train_pass",
        per_step: bool = False,
    ) -> None:
        if mode not in ("train_pass", "eval_pass"):
            raise DynamicsError(f"mode {mode!r}: valid modes are train_pass, eval_pass")
        self.ids, self.id_column, self.mode, self.per_step = list(ids), id_column, mode, per_step
        self.recorder: DynamicsRecorder | None = None
        self.dynamics: Dynamics | None = None
        self.steps: list[tuple[int, np.ndarray, np.ndarray]] = []  # (step, positions, prob)
        self._pending = None
        self._epoch = 0
        self._step = 0
        self._n_epochs = 0
        self._handles: list = []
        self._attached = False

    # ----------------------------------------------------------------------- wiring
    def attach(self, trainer) -> DynamicsCallback:
        """Register on ``trainer`` and keep the id column through its column pruning."""
        trainer._set_signature_columns_if_needed()
        if self.id_column not in trainer._signature_columns:
            trainer._signature_columns.append(self.id_column)
        trainer.add_callback(self)
        self._hook(trainer.model)
        self._attached = True
        return self

    def _hook(self, model) -> None:
        if self._handles:
            return
        self._handles = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post, with_kwargs=True),
        ]

    def _pre(self, module, args, kwargs):
        self._pending = kwargs.pop(self.id_column, None)
        if self._pending is None and module.training and self.mode == "train_pass":
            raise DynamicsError(
                f"the training batch has no {self.id_column!r} column: the Trainer pruned it "
                "(remove_unused_columns) or the dataset lacks it. Add an int column "
                f"{self.id_column!r} (each row's position in the ids list) and call "
                "callback.attach(trainer) instead of Trainer(callbacks=[...])"
            )
        self._labels = kwargs.get("labels")
        return args, kwargs

    def _post(self, module, args, kwargs, output):
        if module.training and self.mode == "train_pass" and self._pending is not None:
            self._record(output.logits, self._labels, self._pending)
        self._pending = None

    def _record(self, logits, labels, positions) -> None:
        if labels is None:
            raise DynamicsError("the training batch has no labels; dynamics need gold labels")
        multilabel = labels.is_floating_point() and labels.shape == logits.shape
        if self.recorder is None:
            self.recorder = DynamicsRecorder(
                self.ids,
                self._n_epochs,
                logits.shape[-1],
                "multilabel" if multilabel else "multiclass",
                mode=self.mode,
            )
        positions = positions.long()
        self.recorder.record(self._epoch, positions, logits, labels)
        if self.per_step:
            prob = self.recorder.recorded_prob(self._epoch, positions)
            self.steps.append((self._step, positions.cpu().numpy(), prob.cpu().numpy()))

    # ----------------------------------------------------------------------- callback events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._n_epochs = math.ceil(args.num_train_epochs)
        if not self._attached:
            self._hook(model)  # ids will be missing if pruned: _pre raises then

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch = int(round(state.epoch or 0))

    def on_step_end(self, args, state, control, **kwargs):
        self._step = state.global_step

    def on_epoch_end(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        if self.mode != "eval_pass":
            return
        was = model.training
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            for batch in train_dataloader:
                batch = {k: v.to(device) for k, v in batch.items()}
                positions = batch[self.id_column]
                labels = batch.get("labels")
                out = model(**batch)  # the pre-hook takes the id column out
                self._record(out.logits, labels, positions)
        model.train(was)

    def on_train_end(self, args, state, control, **kwargs):
        done = math.ceil(state.epoch or 0) if state.epoch else self._n_epochs
        if self.recorder is None:
            raise DynamicsError("training ended with nothing recorded")
        self.dynamics = self.recorder.finish(min(done, self._n_epochs))
        for h in self._handles:
            h.remove()
        self._handles = []
