"""Path patching: the effect of a sender on the output through one receiver only.

    outcome = path_patch(model, structure, pairs, sender, receiver,
                         frozen=["transformer.h.*.attn", "transformer.h.*.mlp"], logit_diff=(3, 5))

As in Wang et al. 2022 (IOI) and TransformerLens's path-patching recipes, in three forwards
over the target inputs (denoising: corrupted; the source is clean):

1. cache the sender's source activation and every frozen module's target output;
2. run the target with the sender patched to its source value and every *frozen* module (the
   middle: names or globs, minus the sender and receiver and what contains or is inside them)
   held at its target output, and record the receiver's sites as they come out;
3. run the target with only the receiver's sites replaced by what (2) recorded, and measure.

So the change reaches the output only along sender -> (unfrozen paths) -> receiver -> output.
Two checks hold by construction and are tested: with nothing frozen and the output layer as
the receiver, path patching equals activation patching of the sender; freezing every
component between a sender and the output layer gives the sender's direct effect.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Sequence

import torch

from ._definitions import Definition, Patch
from ._errors import PatchingError
from ._metrics import compute_metrics
from ._model import InputPairs, LoadedModel
from ._runner import BatchedPatcher, PatchOutcome
from ._sites import Site, capture_sites, eager_attention, edit_sites
from ._structure import Structure


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def frozen_modules(
    structure: Structure, patterns: Sequence[str], keep_free: Sequence[str]
) -> list[str]:
    """Modules matching ``patterns`` (names or globs), minus those related to ``keep_free``."""
    names = [m.name for m in structure.modules.values() if m.patchable]
    out = []
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise PatchingError(
                f"frozen entry {pattern!r} matches no module; valid modules and sizes: "
                f"{structure.valid_names()}"
            )
        out += [n for n in hits if n not in out and not any(_related(n, k) for k in keep_free)]
    return out


def path_patch(
    model: LoadedModel,
    structure: Structure,
    pairs: InputPairs,
    sender: Definition,
    receiver: Definition,
    frozen: Sequence[str] = (),
    direction: str = "denoising",
    logit_diff: tuple[int, int] | None = None,
    metrics: Sequence[str] | None = None,
) -> PatchOutcome:
    """Metrics (1, N) of patching ``sender`` -> ``receiver`` through a frozen middle."""
    checker = BatchedPatcher(model, structure)  # its checks: names, units, inputs
    source, target, lengths = checker.oriented(pairs, direction)
    sender, receiver = checker.prepare([sender, receiver], pairs, logit_diff)
    free = sender.modules + receiver.modules
    middle = frozen_modules(structure, frozen, free)
    s_sites: list[Site] = [(p.module, p.site) for p in sender.patches]
    r_sites: list[Site] = [(p.module, p.site) for p in receiver.patches]
    f_sites: list[Site] = [(name, "output") for name in middle]

    def where(site: Site, patch: Patch, values: torch.Tensor):
        mask = checker.site_mask(site, [patch], lengths)[0]  # (1|n, *mask shape)
        return lambda act: torch.where(mask, values, act)

    t0 = time.perf_counter()
    eager = any(k == "pattern" for _, k in s_sites + r_sites)
    with eager_attention(model.root, eager), torch.inference_mode():
        src_store, rec = capture_sites(model.root, s_sites)
        with edit_sites(model.root, rec):
            source_out = model.forward(source, lengths)
        tgt_store, rec = capture_sites(model.root, f_sites)
        with edit_sites(model.root, rec):
            base_out = model.forward(target, lengths)
        # (2) sender patched, middle frozen; record what reaches the receiver
        edits = {
            s: where(s, p, src_store[s][0]) for s, p in zip(s_sites, sender.patches, strict=True)
        }
        edits.update({s: (lambda act, v=tgt_store[s][0]: v) for s in f_sites})
        recv_store, rec = capture_sites(model.root, r_sites)
        clash = set(edits) & set(rec)
        if clash:
            raise PatchingError(f"sender and receiver share the site(s) {sorted(clash)}")
        with edit_sites(model.root, {**edits, **rec}):
            model.forward(target, lengths)
        # (3) only the receiver changed
        edits = {
            s: where(s, p, recv_store[s][0])
            for s, p in zip(r_sites, receiver.patches, strict=True)
        }
        with edit_sites(model.root, edits):
            patched = model.forward(target, lengths)
    clean_out = source_out if direction == "denoising" else base_out
    values = compute_metrics(patched[None], base_out, source_out, clean_out, logit_diff, metrics)
    label = Definition(sender.patches)
    return PatchOutcome(
        definitions=[label],
        direction=direction,
        ids=list(pairs.ids),
        metrics={k: v.cpu() for k, v in values.items()},
        base_out=base_out.cpu(),
        source_out=source_out.cpu(),
        n_forwards=4,
        timings={"path_s": time.perf_counter() - t0},
    )
