"""The batched patching runner: K definitions x n inputs in one forward.

The story of one run:

1. Two caching forwards, one over all source inputs and one over all target inputs (denoising:
   source = clean, target = corrupted; noising the other way round), record the activations
   to patch in and the outputs of every module that finishes before a patched module starts.
2. Definitions are grouped by the first module they patch, in execution order, and cut into
   chunks of K. For a chunk, the target inputs are repeated K times along the batch: copy k
   (rows k*n .. k*n+n-1) carries definition k.
3. Modules that finish before the chunk's first patched module starts are not run at all: their
   forward is swapped for "return the cached target output, repeated K times". That is the
   cached prefix: a sequential MLP starts computing at the patched layer, a transformer skips
   every earlier block (its embedding and attention included). It needs no architecture-specific
   code, only the start/end order that ``_structure.probe_structure`` recorded.
   A replayed output that only other replayed modules read is not built at all.
4. Token models: modules that are position-wise and whose output reaches the readout only at
   some positions (the last block's MLP of a causal LM read at the last token) run on those
   positions only (``_positions.py``).
5. A forward hook on each patched module replaces the selected units (and positions) of copy k
   with the source activation, through a (K, 1, ...) boolean mask: one ``torch.where``.
6. The (K, n, O) outputs go straight into the tensor metrics of ``_metrics.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ._definitions import Definition, Patch, validate
from ._errors import PatchingError
from ._metrics import compute_metrics
from ._model import InputPairs, LoadedModel
from ._modules import ModuleInfo
from ._structure import Structure

DIRECTIONS = ("denoising", "noising")
# K: definitions per forward. On CPU a few dozen copies fill the matmuls well without the
# stacked activations falling out of cache; measured on the CartPole DQN (bench/).
DEFAULT_DEFS_PER_FORWARD = 64
# Upper bound on K * n rows per forward, where a token sequence counts one row per position.
# ~16k rows of a small MLP or ~1.3k sequences of 12 tokens keep activations cache-friendly on
# a CPU (bench: 1k-2k sequences beat 8k by ~25%); lower it for large-vocabulary LMs.
DEFAULT_MAX_BATCH_ROWS = 16384


@dataclass
class PatchOutcome:
    """Metrics of every (definition, input) for one direction."""

    definitions: list[Definition]
    direction: str
    ids: list[str]
    metrics: dict[str, torch.Tensor]  # name -> (D, N)
    base_out: torch.Tensor  # (N, O) unpatched target run
    source_out: torch.Tensor  # (N, O) unpatched source run
    timings: dict[str, float] = field(default_factory=dict)
    n_forwards: int = 0


def _leaves(output: Any) -> tuple[Any, ...]:
    return output if isinstance(output, tuple) else (output,)


def _capture(output: Any) -> tuple[Any, ...]:
    # Clone: a later in-place op (ReLU(inplace=True)) must not change what we cached.
    return tuple(o.detach().clone() if isinstance(o, torch.Tensor) else o for o in _leaves(output))


class BatchedPatcher:
    """Runs definitions over input pairs; see the module docstring for how."""

    def __init__(
        self,
        model: LoadedModel,
        structure: Structure,
        *,
        defs_per_forward: int = DEFAULT_DEFS_PER_FORWARD,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        reuse_prefix: bool = True,
        slice_positions: bool = True,
    ) -> None:
        if defs_per_forward < 1 or max_batch_rows < 1:
            raise PatchingError(
                f"defs_per_forward and max_batch_rows must be >= 1, got {defs_per_forward}, "
                f"{max_batch_rows}"
            )
        self.model, self.structure = model, structure
        self.k, self.max_rows, self.reuse_prefix = defs_per_forward, max_batch_rows, reuse_prefix
        self.slice_positions = slice_positions
        self.modules = dict(model.root.named_modules())
        self.device = next(model.root.parameters(), torch.empty(0)).device

    # -- planning -------------------------------------------------------------------------
    def _first(self, d: Definition) -> ModuleInfo:
        return min((self.structure.modules[p.module] for p in d.patches), key=lambda m: m.start)

    def _prefix(self, first: ModuleInfo) -> list[str]:
        """Maximal modules that end before ``first`` starts and can be replayed from the cache."""
        if not self.reuse_prefix:
            return []
        chosen: list[str] = []
        picked: set[str] = set()
        for m in self.structure.modules.values():  # execution order
            if m.end >= first.start or m.calls != 1 or m.layout is None:
                continue
            if any(a in picked for a in self.structure.ancestors(m.name)):
                continue  # an enclosing module is replayed already
            chosen.append(m.name)
            picked.add(m.name)
        return chosen

    def _unused(self, replay: list[str]) -> set[str]:
        """Replayed modules whose output only feeds other replayed modules: no need to build it."""
        replayed = set(replay)

        def skipped(where: str) -> bool:
            return where in replayed or any(a in replayed for a in self.structure.ancestors(where))

        return {
            name
            for name in replay
            if all(where and skipped(where) for where in self.structure.modules[name].consumers)
        }

    def _sliced(self, replay: list[str], patched: set[str]) -> dict[str, tuple[int, ...]]:
        """Modules to run on their readout positions only (outside the replayed prefix, and
        neither holding nor inside a patched module, whose mask spans every position)."""
        if not self.slice_positions:
            return {}
        out: dict[str, tuple[int, ...]] = {}
        for m in self.structure.modules.values():  # execution order: outer modules first
            if m.readout_positions is None or m.name in replay:
                continue
            outer = self.structure.ancestors(m.name)
            if any(a in out or a in replay or a in patched for a in outer):
                continue  # inside a sliced, replayed or patched module
            if any(n == m.name or n.startswith(m.name + ".") for n in (*patched, *replay)):
                continue  # holds a patched or replayed module
            out[m.name] = m.readout_positions
        return out

    def plan(self, definitions: Sequence[Definition]) -> list[tuple[list[int], list[str]]]:
        """Chunks of definition indices, each with the modules whose forward it replays."""
        groups: dict[str, list[int]] = {}
        for i, d in enumerate(definitions):
            groups.setdefault(self._first(d).name, []).append(i)
        chunks = []
        for name in sorted(groups, key=lambda n: self.structure.modules[n].start):
            first = self.structure.modules[name]
            prefix = self._prefix(first)
            for a in range(0, len(groups[name]), self.k):
                idx = groups[name][a : a + self.k]
                patched = {p.module for i in idx for p in definitions[i].patches}
                inner = any(m.startswith(name + ".") for m in patched)
                # The first patched module itself is replayed too (its input is unpatched),
                # unless something inside it is patched as well.
                replay = prefix + (
                    [name] if self.reuse_prefix and first.layout and not inner else []
                )
                chunks.append((idx, replay))
        return chunks

    # -- execution ------------------------------------------------------------------------
    def _positions(self, x: torch.Tensor) -> int:
        """Rows one input counts for in the batch budget: its length for token sequences."""
        return x.shape[1] if self.model.input_kind == "tokens" and x.dim() > 1 else 1

    def _forward_cached(
        self, x: torch.Tensor, capture: set[str]
    ) -> tuple[torch.Tensor, dict[str, tuple[Any, ...]]]:
        """Outputs (N, O) and captured module outputs, in row chunks of at most max_rows."""
        outs, caps = [], {name: [] for name in capture}
        handles = [
            self.modules[name].register_forward_hook(
                lambda mod, args, out, n=name: caps[n].append(_capture(out))
            )
            for name in capture
        ]
        try:
            step = max(1, self.max_rows // self._positions(x))
            for a in range(0, len(x), step):
                outs.append(self.model.forward(x[a : a + step]))
        finally:
            for h in handles:
                h.remove()
        merged = {}
        for name, parts in caps.items():
            layout = self.structure.modules[name].layout or (True,)
            merged[name] = tuple(
                torch.cat([p[j] for p in parts]) if batched else parts[0][j]
                for j, batched in enumerate(layout)
            )
        return torch.cat(outs), merged

    def _mask(self, info: ModuleInfo, patches: list[Patch | None]) -> torch.Tensor:
        """(K, 1, *mask_shape) bool: which elements of each copy's activation to replace."""
        shape = info.shape
        assert shape is not None and info.unit_axis is not None  # validated before planning
        mshape = [1] * len(shape)
        mshape[info.unit_axis] = shape[info.unit_axis]
        if info.position_axis is not None:
            mshape[info.position_axis] = shape[info.position_axis]
        mask = torch.zeros(len(patches), *mshape, dtype=torch.bool)
        for k, patch in enumerate(patches):
            if patch is None:
                continue  # this copy does not patch this module
            view = [1] * len(shape)
            view[info.unit_axis] = -1
            units = torch.zeros(shape[info.unit_axis], dtype=torch.bool)
            units[list(patch.units) if patch.units is not None else slice(None)] = True
            m = units.view(view)
            if info.position_axis is not None and patch.positions is not None:
                pview = [1] * len(shape)
                pview[info.position_axis] = -1
                pos = torch.zeros(shape[info.position_axis], dtype=torch.bool)
                pos[list(patch.positions)] = True
                m = m & pos.view(pview)
            mask[k] = m.expand(mshape)
        return mask.unsqueeze(1).to(self.device)

    def run(
        self,
        definitions: Sequence[Definition],
        pairs: InputPairs,
        direction: str = "denoising",
        logit_diff: tuple[int, int] | None = None,
        metrics: Sequence[str] | None = None,
    ) -> PatchOutcome:
        """Metrics (``metrics``: names, default all) of every definition over every pair."""
        if direction not in DIRECTIONS:
            raise PatchingError(
                f"unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)} (or 'both' in a stage)"
            )
        definitions = list(definitions)
        validate(definitions, self.structure)
        seq_len = self.structure.seq_len
        if seq_len is not None and pairs.clean.shape[1] != seq_len:
            raise PatchingError(
                f"the structure was probed with sequences of length {seq_len} but the inputs "
                f"have length {pairs.clean.shape[1]}; probe with a sample of these inputs"
            )
        source, target = (
            (pairs.clean, pairs.corrupted)
            if direction == "denoising"
            else (pairs.corrupted, pairs.clean)
        )
        source, target = source.to(self.device), target.to(self.device)
        chunks = self.plan(definitions)
        patched = {p.module for d in definitions for p in d.patches}
        replayed = {name for _, replay in chunks for name in replay}

        t0 = time.perf_counter()
        with torch.inference_mode():
            source_out, src_full = self._forward_cached(source, patched)
            base_out, tgt_full = self._forward_cached(target, replayed)
        src = {name: out[0] for name, out in src_full.items()}  # patchable tensor (N, *shape)
        clean_out = source_out if direction == "denoising" else base_out
        t_cache = time.perf_counter() - t0

        n_total = len(pairs)
        results: dict[str, torch.Tensor] = {}
        n_forwards = 0
        t1 = time.perf_counter()
        for idx, replay in chunks:
            k = len(idx)
            unused = self._unused(replay)
            sliced = self._sliced(replay, {m for i in idx for m in definitions[i].modules})
            rows = max(1, min(n_total, self.max_rows // (k * self._positions(target))))
            infos = {m: self.structure.modules[m] for i in idx for m in definitions[i].modules}
            masks = {
                m: self._mask(
                    info,
                    [
                        next((p for p in definitions[i].patches if p.module == m), None)
                        for i in idx
                    ],
                )
                for m, info in infos.items()
            }
            for a in range(0, n_total, rows):
                b = min(n_total, a + rows)
                out = self._patched_forward(
                    target, a, b, k, replay, unused, sliced, tgt_full, masks, src
                )
                n_forwards += 1
                block = compute_metrics(
                    out.view(k, b - a, -1),
                    base_out[a:b],
                    source_out[a:b],
                    clean_out[a:b],
                    logit_diff,
                    metrics,
                )
                for name, values in block.items():
                    if name not in results:
                        results[name] = torch.full((len(definitions), n_total), float("nan"))
                    results[name][idx, a:b] = values.cpu()
        t_patch = time.perf_counter() - t1
        return PatchOutcome(
            definitions=definitions,
            direction=direction,
            ids=list(pairs.ids),
            metrics=results,
            base_out=base_out.cpu(),
            source_out=source_out.cpu(),
            n_forwards=n_forwards,
            timings={"cache_s": t_cache, "patch_s": t_patch},
        )

    def _patched_forward(
        self,
        target: torch.Tensor,
        a: int,
        b: int,
        k: int,
        replay: list[str],
        unused: set[str],
        sliced: dict[str, tuple[int, ...]],
        cached: dict[str, tuple[Any, ...]],
        masks: dict[str, torch.Tensor],
        src: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """One forward of k copies of target rows a:b -> outputs (k * (b - a), O)."""
        n = b - a
        handles, swapped = [], []

        def replayer(name: str):
            layout = self.structure.modules[name].layout
            assert layout is not None
            leaves = []
            for j, (leaf, batched) in enumerate(zip(cached[name], layout, strict=True)):
                if batched and name in unused and name not in masks:
                    # Only other skipped modules read it: an empty stand-in, which fails
                    # loudly should that analysis ever be wrong, instead of a K-fold copy.
                    leaf = leaf.new_empty(0)
                elif batched and not (j == 0 and name in masks):
                    leaf = leaf[a:b].repeat(k, *[1] * (leaf.dim() - 1))  # (k*n, ...) copy-major
                leaves.append(leaf)
            if name in masks:
                # The first patched module: build its patched output in one pass instead of
                # repeating the cached activation and then overwriting it in a hook.
                tgt = cached[name][0][a:b]  # (n, *shape)
                leaves[0] = torch.where(masks[name], src[name][a:b].unsqueeze(0), tgt.unsqueeze(0))
                leaves[0] = leaves[0].view(k * n, *tgt.shape[1:])
            result = tuple(leaves) if self.structure.modules[name].tuple_output else leaves[0]
            return lambda *args, **kwargs: result

        def patcher(name: str):
            mask, source = masks[name], src[name][a:b].unsqueeze(0)  # (k,1,...), (1,n,...)
            is_tuple = self.structure.modules[name].tuple_output

            def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
                act = output[0] if is_tuple else output  # (k*n, *shape)
                new = torch.where(mask, source, act.view(k, n, *act.shape[1:])).view_as(act)
                return (new, *output[1:]) if is_tuple else new

            return hook

        def slicer(name: str):
            module = self.modules[name]
            original, keep = module.forward, torch.tensor(sliced[name], device=self.device)

            def forward(x: torch.Tensor) -> torch.Tensor:  # x (k*n, T, ...)
                part = original(x.index_select(1, keep))  # (k*n, len(keep), ...)
                out = part.new_zeros(part.shape[0], x.shape[1], *part.shape[2:])
                out[:, keep] = part  # other positions never reach the readout
                return out

            return forward

        try:
            for name in sliced:
                module = self.modules[name]
                module.forward = slicer(name)
                swapped.append(module)
            for name in replay:
                module = self.modules[name]
                module.forward = replayer(name)  # instance attribute shadows the class method
                swapped.append(module)
            for name in masks:
                if name not in replay:  # a replayed module's output is patched already
                    handles.append(self.modules[name].register_forward_hook(patcher(name)))
            x = target[a:b].repeat(k, *[1] * (target.dim() - 1))  # (k*n, ...): copy-major
            with torch.inference_mode():
                return self.model.forward(x)
        finally:
            for h in handles:
                h.remove()
            for module in swapped:
                del module.forward
