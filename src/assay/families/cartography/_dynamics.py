"""Training dynamics: per example and epoch, the gold-label probability and whether it was right.

    rec = DynamicsRecorder(ids, n_epochs=5, n_labels=2)
    rec.record(epoch, positions, logits, gold)    # inside the training loop, per batch
    dyn = rec.finish()                            # Dynamics; dyn.save("dynamics.npz")
    dyn.to_reference("out/")                      # out/training_dynamics/dynamics_epoch_0.jsonl

Storage is dense (``gold_prob``: (E, N) for E epochs and N examples, in the order of ``ids``)
and keyed by stable example ids. Classification also keeps the logits (E, N, L), which is what
allenai/cartography's ``dynamics_epoch_{e}.jsonl`` files hold, so dynamics convert both ways.

* multiclass: p = softmax(logits)[gold]; correct = argmax == gold.
* multilabel: gold is multi-hot (N, L); p = mean over labels of the probability given to the
  gold value of that label (sigmoid, or 1 - sigmoid); correct = every label right at 0.5.
* qa: recorded per window as sqrt(p_start * p_end) (the geometric mean of the two span
  probabilities), correct when both argmaxes are right; :func:`reduce_windows` then picks, per
  example and epoch, the window holding the answer with the highest probability.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from assay import AssayError, atomic_path

if TYPE_CHECKING:
    import torch

Task = Literal["multiclass", "multilabel", "qa"]
REFERENCE_DIR = "training_dynamics"


class DynamicsError(AssayError):
    """Dynamics that are incomplete, malformed, or do not cover the examples asked for."""


@dataclasses.dataclass(frozen=True)
class Dynamics:
    ids: list[str]  # (N,)
    gold: np.ndarray  # (N,) int64 labels, (N, L) multi-hot, or (N,) zeros for qa
    gold_prob: np.ndarray  # (E, N) float32
    correct: np.ndarray  # (E, N) bool
    logits: np.ndarray | None  # (E, N, L) float32 (float64 as read from a reference file)
    task: Task = "multiclass"
    mode: str = "train_pass"  # train_pass (reference) | eval_pass | reference_file

    @property
    def n_epochs(self) -> int:
        return int(self.gold_prob.shape[0])

    def save(self, path: str | Path) -> None:
        arrays = {
            "ids": np.asarray(self.ids, dtype=str),
            "gold": self.gold,
            "gold_prob": self.gold_prob,
            "correct": self.correct,
            "meta": np.asarray(json.dumps({"task": self.task, "mode": self.mode})),
        }
        if self.logits is not None:
            arrays["logits"] = self.logits
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            # numpy's stub puts `allow_pickle: bool` beside `**kwds: ArrayLike`, so mypy matches
            # any str-keyed dict against that bool; the keys here are fixed array names
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> Dynamics:
        """A ``dynamics.npz`` as :meth:`save` writes it; anything else is refused by name."""
        fix = "give the artifacts/dynamics.npz a cartography.dynamics run wrote"
        try:
            with np.load(path, allow_pickle=False) as z:  # never unpickle
                missing = [k for k in NPZ_KEYS if k not in z.files]
                if missing:
                    raise DynamicsError(
                        f"{path} lacks {missing} (it holds {sorted(z.files)}); {fix}"
                    )
                meta = json.loads(str(z["meta"]))
                dyn = cls(
                    ids=z["ids"].tolist(),
                    gold=z["gold"],
                    gold_prob=z["gold_prob"],
                    correct=z["correct"],
                    logits=z["logits"] if "logits" in z.files else None,
                    task=meta["task"],
                    mode=meta["mode"],
                )
        except DynamicsError:
            raise
        except ValueError as exc:
            if "pickle" in str(exc):
                raise DynamicsError(
                    f"{path} holds object arrays, which load only by unpickling (running code); "
                    f"assay never unpickles dynamics: {fix}"
                ) from None
            raise DynamicsError(f"cannot read {path} as a .npz ({exc}); {fix}") from None
        except (OSError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            why = "the file is empty" if isinstance(exc, EOFError) else exc
            raise DynamicsError(f"cannot read {path} as a .npz ({why}); {fix}") from None
        dyn.check(str(path), finite=False)  # a diverged run's NaNs stay readable (analysis)
        return dyn

    def check(self, source: str, finite: bool = True) -> None:
        """Shapes agree and (``finite``) every probability is a finite number in [0, 1]."""
        E, N = self.gold_prob.shape if self.gold_prob.ndim == 2 else (None, None)
        if E is None or self.correct.shape != (E, N) or len(self.ids) != N:
            raise DynamicsError(
                f"{source}: shapes disagree: gold_prob {self.gold_prob.shape} (want (E, N)), "
                f"correct {self.correct.shape}, {len(self.ids)} ids"
            )
        bad = ~np.isfinite(self.gold_prob) | (self.gold_prob < 0) | (self.gold_prob > 1)
        if finite and bad.any():
            e, i = (int(x[0]) for x in np.nonzero(bad))
            raise DynamicsError(
                f"{source}: {int(bad.sum())} gold probabilities are not finite numbers in "
                f"[0, 1] (the first: guid {self.ids[i]!r} in epoch {e}, "
                f"{self.gold_prob[e, i]}); the training that recorded them diverged"
            )

    def align(self, ids: list[str], *, source: str, fix: str) -> Dynamics:
        """These dynamics for exactly ``ids`` (in that order); a clear error if any is missing."""
        index = {guid: i for i, guid in enumerate(self.ids)}
        missing = [guid for guid in ids if guid not in index]
        if missing:
            raise DynamicsError(
                f"the dynamics from {source} cover {len(ids) - len(missing)} of the {len(ids)} "
                f"training examples; missing ids include {missing[:3]} (they have "
                f"{self.ids[:3]}...). The dynamics must come from a run over the same training "
                f"data: {fix}"
            )
        pos = np.fromiter((index[guid] for guid in ids), dtype=np.int64, count=len(ids))
        return dataclasses.replace(
            self,
            ids=list(ids),
            gold=self.gold[pos],
            gold_prob=self.gold_prob[:, pos],
            correct=self.correct[:, pos],
            logits=None if self.logits is None else self.logits[:, pos],
        )

    # ----------------------------------------------------------------- the reference format
    def to_reference(self, out_dir: str | Path) -> Path:
        """``out_dir/training_dynamics/dynamics_epoch_{e}.jsonl`` with guid, logits, gold."""
        if self.logits is None:
            raise DynamicsError("the reference format stores logits; QA dynamics have none")
        folder = Path(out_dir) / REFERENCE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for e in range(self.n_epochs):
            lines = [
                json.dumps(
                    {
                        "guid": guid,
                        f"logits_epoch_{e}": self.logits[e, i].tolist(),
                        "gold": self.gold[i].tolist(),
                    }
                )
                for i, guid in enumerate(self.ids)
            ]
            with atomic_path(folder / f"dynamics_epoch_{e}.jsonl") as tmp:
                tmp.write_text("\n".join(lines) + "\n")
        return folder

    @classmethod
    def from_reference(cls, folder: str | Path) -> Dynamics:
        """Read allenai/cartography's folder (or its parent holding ``training_dynamics/``)."""
        folder = Path(folder)
        if (folder / REFERENCE_DIR).is_dir():
            folder = folder / REFERENCE_DIR
        files = sorted(
            folder.glob("dynamics_epoch_*.jsonl"), key=lambda p: int(p.stem.rsplit("_", 1)[1])
        )
        if not files:
            raise DynamicsError(
                f"no dynamics_epoch_<e>.jsonl files in {folder}; give the folder "
                f"the training run wrote (it holds {REFERENCE_DIR}/)"
            )
        epochs = [int(p.stem.rsplit("_", 1)[1]) for p in files]
        if epochs != list(range(len(files))):
            raise DynamicsError(f"{folder}: epochs {epochs} are not 0..{len(files) - 1}")
        ids: list[str] | None = None
        gold: np.ndarray | None = None
        logits: list[list] = []
        for e, path in enumerate(files):
            rows = _read_rows(path, f"logits_epoch_{e}")
            order: dict[str, dict] = {}
            for guid, row in rows:
                if order.setdefault(guid, row) is not row:
                    raise DynamicsError(f"{path}: guid {guid!r} appears more than once")
            if ids is None:
                ids = list(order)
                gold = _gold([order[g]["gold"] for g in ids], path)
            elif set(order) != set(ids):
                raise DynamicsError(
                    f"{path}: its guids differ from epoch 0's "
                    f"({len(set(order) ^ set(ids))} ids in only one of them)"
                )
            logits.append([order[g][f"logits_epoch_{e}"] for g in ids])
        # files is not empty (checked above), so epoch 0 set both
        assert ids is not None and gold is not None
        arr = _logits(logits, ids, files)  # (E, N, L)
        task: Task = "multilabel" if gold.ndim == 2 else "multiclass"
        _check_gold(gold, arr.shape[-1], ids, files[0])
        prob, correct = probabilities(arr, gold, task)
        return cls(ids, gold, prob, correct, arr, task, mode="reference_file")


NPZ_KEYS = ("ids", "gold", "gold_prob", "correct", "meta")  # what save() writes; logits optional
ROW_KEYS = "guid, logits_epoch_<e> (a list of numbers) and gold"


def _read_rows(path: Path, key: str) -> list[tuple[str, dict]]:
    """(guid, row) per line of one reference file, each line checked for what it must hold."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DynamicsError(
            f"{path} is not UTF-8 text (a binary file?); each line must be a JSON object "
            f"with {ROW_KEYS}"
        ) from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DynamicsError(f"{path} line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or "guid" not in row or key not in row or "gold" not in row:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise DynamicsError(f"{path} line {n}: need {ROW_KEYS} ({key!r}); got {keys}")
        rows.append((str(row["guid"]), row))
    if not rows:
        raise DynamicsError(f"{path} has no rows; each line must be a JSON object with {ROW_KEYS}")
    return rows


def _gold(values: list, path: Path) -> np.ndarray:
    """Gold labels: integers (multiclass) or lists of 0/1 (multilabel), never strings."""
    try:
        gold = np.asarray(values)
    except ValueError:
        gold = np.asarray(values, dtype=object)
    if gold.dtype.kind not in "iu" or gold.ndim not in (1, 2):
        bad = next(
            (v for v in values if isinstance(v, bool) or not isinstance(v, (int, list))), values[0]
        )
        raise DynamicsError(
            f"{path}: gold {bad!r} is not a label; gold must be an integer label index "
            "(multiclass) or a list of 0/1 (multilabel), the same kind on every row"
        )
    return gold.astype(np.int64)


def _logits(per_epoch: list[list], ids: list[str], files: list[Path]) -> np.ndarray:
    """(E, N, L) float64 logits as written (allenai takes the argmax of these float64 values:
    rounding them to float32 turns near-ties into ties and flips correctness); ragged,
    non-numeric or non-finite logits are refused."""
    sizes = {len(v) if isinstance(v, list) else -1 for epoch in per_epoch for v in epoch}
    if len(sizes) > 1 or -1 in sizes or 0 in sizes:
        first = len(per_epoch[0][0]) if isinstance(per_epoch[0][0], list) else -1
        for e, epoch in enumerate(per_epoch):
            for i, v in enumerate(epoch):
                if not isinstance(v, list) or len(v) != first or not v:
                    n = len(v) if isinstance(v, list) else type(v).__name__
                    raise DynamicsError(
                        f"{files[e]}: guid {ids[i]!r} has {n} logits where guid {ids[0]!r} in "
                        f"epoch 0 has {first}; every row needs one logit per label"
                    )
    try:
        with np.errstate(over="ignore"):
            arr = np.asarray(per_epoch, dtype=np.float64)
    except (ValueError, TypeError):
        raise DynamicsError(
            f"{files[0].parent}: logits must be lists of numbers; some hold other values"
        ) from None
    bad = ~(np.isfinite(arr) & (np.abs(arr) <= np.finfo(np.float32).max)).all(-1)  # (E, N)
    if bad.any():
        e, i = (int(x[0]) for x in np.nonzero(bad))
        raise DynamicsError(
            f"{files[e]}: the logits of guid {ids[i]!r} are not finite ({per_epoch[e][i]}): "
            f"NaN, Infinity or beyond float32's range (|x| > 3.4e38), in {int(bad.sum())} "
            "row(s); the training that wrote them diverged, and no data map can be drawn from them"
        )
    return arr


def _check_gold(gold: np.ndarray, n_labels: int, ids: list[str], path: Path) -> None:
    """Multiclass gold in 0..L-1 (-1 is not "the last label"); multilabel gold 0/1 per label."""
    if gold.ndim == 2:
        want = f"a list of {n_labels} values, each 0 or 1"
        bad = np.isin(gold, (0, 1), invert=True).any(1) | (gold.shape[1] != n_labels)
    else:
        want = f"an integer label index in 0..{n_labels - 1}"
        bad = (gold < 0) | (gold >= n_labels)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DynamicsError(
            f"{path}: gold {gold[i].tolist()!r} of guid {ids[i]!r} is not {want} (the rows "
            f"have {n_labels} logits); {int(bad.sum())} row(s) have such a gold"
        )


def probabilities(
    logits: np.ndarray, gold: np.ndarray, task: Task
) -> tuple[np.ndarray, np.ndarray]:
    """Gold-label probability and correctness from logits (..., N, L) and gold (N,) / (N, L),
    computed in float64 (correctness is the argmax of the logits as given)."""
    logits = np.asarray(logits, dtype=np.float64)
    if task == "multilabel":
        sig = 1.0 / (1.0 + np.exp(-logits))
        p_gold = np.where(gold > 0.5, sig, 1.0 - sig)  # (..., N, L)
        return p_gold.mean(-1).astype(np.float32), (p_gold > 0.5).all(-1)
    z = logits - logits.max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    g = np.broadcast_to(gold[..., None].astype(np.int64), probs.shape[:-1] + (1,))
    p_gold = np.take_along_axis(probs, g, -1)[..., 0]
    return p_gold.astype(np.float32), logits.argmax(-1) == gold


class DynamicsRecorder:
    """Dense (E, N) buffers filled batch by batch; positions index the ``ids`` list.

    Buffers live on the device of the first logits recorded, so a GPU loop never syncs per
    batch; :meth:`finish` copies them to numpy once.
    """

    def __init__(
        self,
        ids: list[str],
        n_epochs: int,
        n_labels: int | None,
        task: Task,
        mode: str = "train_pass",
        keep_logits: bool = True,
    ) -> None:
        self.ids, self.n_epochs, self.n_labels, self.task, self.mode = (
            list(ids),
            n_epochs,
            n_labels,
            task,
            mode,
        )
        self.keep_logits = keep_logits and task != "qa"
        self._buf: dict[str, torch.Tensor] | None = None  # gold_prob, correct, seen[, logits]
        self.gold: torch.Tensor | None = None  # (N,) int64 or (N, L) float32 multi-hot

    def _buffers(self, like: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(buffers, gold), allocated on ``like``'s device by the first call."""
        import torch

        if self._buf is not None and self.gold is not None:
            return self._buf, self.gold
        E, N = self.n_epochs, len(self.ids)
        device = like.device
        buf = {
            "gold_prob": torch.full((E, N), float("nan"), dtype=torch.float32, device=device),
            "correct": torch.zeros((E, N), dtype=torch.bool, device=device),
            "seen": torch.zeros((E, N), dtype=torch.bool, device=device),
        }
        if self.keep_logits or self.task == "multilabel":
            if self.n_labels is None:
                raise DynamicsError(
                    f"n_labels=None: a {self.task} recorder keeping logits needs the number of "
                    "labels; pass n_labels (the classifier's output size)"
                )
            if self.keep_logits:
                buf["logits"] = torch.zeros(
                    (E, N, self.n_labels), dtype=torch.float32, device=device
                )
        if self.task == "multilabel":
            assert self.n_labels is not None  # checked just above
            gold = torch.zeros((N, self.n_labels), dtype=torch.float32, device=device)
        else:
            gold = torch.zeros((N,), dtype=torch.int64, device=device)
        self._buf, self.gold = buf, gold
        return buf, gold

    def record(self, epoch: int, positions, logits, gold) -> None:
        """One batch of the classification forward pass: logits (B, L), gold (B,) or (B, L)."""
        import torch

        with torch.no_grad():
            logits = logits.detach().float()
            buf, gold_buf = self._buffers(logits)
            positions = positions.to(logits.device)
            # (B, L): probabilities and correctness in float64, as allenai (MPS has no float64)
            x = logits.double() if logits.device.type != "mps" else logits.cpu().double()
            g = gold.to(x.device)
            if self.task == "multilabel":
                sig = torch.sigmoid(x)
                p_gold = torch.where(g > 0.5, sig, 1 - sig)  # (B, L)
                prob, correct = p_gold.mean(-1), (p_gold > 0.5).all(-1)
            else:
                prob = torch.softmax(x, -1).gather(1, g[:, None]).squeeze(1)
                correct = x.argmax(-1) == g
            prob, correct = prob.float().to(logits.device), correct.to(logits.device)
            self._put(buf, epoch, positions, prob, correct)
            gold_buf[positions] = gold.to(gold_buf.dtype)
            if self.keep_logits:
                buf["logits"][epoch, positions] = logits

    def record_probs(self, epoch: int, positions, prob, correct) -> None:
        """Already-computed probabilities (QA windows): prob (B,), correct (B,)."""
        import torch

        with torch.no_grad():
            buf, _ = self._buffers(prob)
            self._put(buf, epoch, positions.to(prob.device), prob.detach().float(), correct)

    @staticmethod
    def _put(buf: dict[str, torch.Tensor], epoch: int, positions, prob, correct) -> None:
        buf["gold_prob"][epoch, positions] = prob
        buf["correct"][epoch, positions] = correct
        buf["seen"][epoch, positions] = True

    def recorded_prob(self, epoch: int, positions: torch.Tensor) -> torch.Tensor:
        """(B,) the gold-label probabilities recorded for ``positions`` in ``epoch``."""
        if self._buf is None:
            raise DynamicsError("no batch was recorded: the training loop never called record()")
        prob = self._buf["gold_prob"]
        return prob[epoch, positions.to(prob.device)]

    def finish(self, n_epochs_done: int | None = None) -> Dynamics:
        """The recorded dynamics; an error naming what is missing if any cell was not filled."""
        E = self.n_epochs if n_epochs_done is None else n_epochs_done
        if self._buf is None or self.gold is None:
            raise DynamicsError("no batch was recorded: the training loop never called record()")
        buf = {k: v[:E].cpu().numpy() for k, v in self._buf.items()}
        if not buf["seen"].all():
            e, i = np.argwhere(~buf["seen"])[0]
            raise DynamicsError(
                f"dynamics incomplete: {int((~buf['seen']).sum())} (epoch, "
                f"example) cells never recorded, first epoch {e} id "
                f"{self.ids[i]!r}; every example must be seen every epoch"
            )
        gold = self.gold.cpu().numpy()
        return Dynamics(
            self.ids,
            gold,
            buf["gold_prob"],
            buf["correct"],
            buf.get("logits"),
            self.task,
            self.mode,
        )


def reduce_windows(
    window_dyn: Dynamics,
    example_of_window: np.ndarray,
    has_answer: np.ndarray,
    example_ids: list[str],
) -> tuple[Dynamics, list[str]]:
    """QA: per example and epoch, the answer-holding window with the highest probability.

    Windows without the answer are not evidence about learning the answer (their target is
    [CLS]), so they are left out; an example none of whose windows holds the answer is returned
    in the second list (reported, and excluded from the map) rather than given a made-up value.
    """
    E, N = window_dyn.n_epochs, len(example_ids)
    prob = np.where(has_answer[None, :], window_dyn.gold_prob, -np.inf)  # (E, W)
    best = np.full((E, N), -np.inf, dtype=np.float64)
    # numpy's stub types ufunc.at's indices as an integer array only, though numpy documents and
    # accepts a tuple of index objects (here every epoch row, the window's example column)
    np.maximum.at(best, (slice(None), example_of_window), prob)  # type: ignore[arg-type]
    # correctness of the window that attained the best probability (first such window)
    hit = prob == best[:, example_of_window]
    order = np.arange(len(example_of_window))
    first = np.full((E, N), len(order), dtype=np.int64)
    np.minimum.at(  # same numpy stub defect as np.maximum.at above
        first,
        (slice(None), example_of_window),  # type: ignore[arg-type]
        np.where(hit, order[None, :], len(order)),
    )
    ok = np.isfinite(best).all(0)
    safe = np.where(first < len(order), first, 0)
    correct = np.take_along_axis(window_dyn.correct, safe, 1) & np.isfinite(best)
    keep = np.flatnonzero(ok)
    dyn = Dynamics(
        [example_ids[i] for i in keep],
        np.zeros(len(keep), dtype=np.int64),
        best[:, keep].astype(np.float32),
        correct[:, keep],
        None,
        "qa",
        window_dyn.mode,
    )
    return dyn, [example_ids[i] for i in np.flatnonzero(~ok)]
