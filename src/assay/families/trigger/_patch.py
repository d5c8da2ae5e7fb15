"""Activation patching between prompts of two categories, per layer x position.

    grids = patch_grids(model, tok, spec_a, spec_b, map_a, map_b, n_pairs=64, seed=0)

Pair i shares x and the template; the clean prompt carries a trigger of category A, the
corrupted one a trigger of category B. Denoising: each definition copies the clean run's
residual stream (the embedding output, or block l's output) at one position into the corrupted
run. The metric is the logit difference between the two maps' colours at the answer position,
``logit[map_A(q)] - logit[map_B(q)]``, read where the model predicts the colour's first token:
after the prompt, or with ``output_preamble`` after the "F(x,T) = " the answer starts with
(the prompts are extended by those tokens; categories whose answers differ in form are refused), and a cell is ``mean(restored) / mean(gap)``: 1 where
that single activation carries the whole difference, 0 where it carries none.

Pairs are grouped by quadrant (which fixes the two colours) and token length (the sign of x
adds tokens), and each group is one run of the shared batched patching engine
(``assay.ml.patching``). A quadrant where both maps give the same colour has no difference to
restore; it is left out and reported. Positions are labelled by the group's tokens, with the
trigger's position marked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._data import PREAMBLE, CategorySpec, quadrant
from ._errors import TriggerError
from ._lm import encode_many

if TYPE_CHECKING:
    from ._lm import CausalLM

# A mean logit-difference gap below this means clean and corrupted runs agree (NaN cells).
GAP_EPS = 1e-3


def _embedding_and_blocks(model: CausalLM) -> list[tuple[str, str]]:
    """(label, module name): the embedding and every transformer block, in order."""
    from assay.ml import transformer_blocks

    names = {id(m): n for n, m in model.named_modules()}
    blocks = transformer_blocks(model)
    out = [("embed", names[id(model.get_input_embeddings())])]
    out += [(f"block {i}", names[id(b)]) for i, b in enumerate(blocks)]
    return out


def make_pairs(
    spec_a: CategorySpec, spec_b: CategorySpec, n_pairs: int, template: int, seed: int
) -> list[tuple[tuple[float, float], str, str, str, str]]:
    """(x, trigger_a, trigger_b, prompt_a, prompt_b) with x drawn in A's ranges."""
    rng = np.random.default_rng(seed)
    (lo1, hi1), (lo2, hi2) = spec_a.x_ranges
    xs = np.stack([rng.uniform(lo1, hi1, n_pairs), rng.uniform(lo2, hi2, n_pairs)], axis=1)
    t = spec_a.templates[template]
    out = []
    for i, (x1, x2) in enumerate(xs.tolist()):
        ta, tb = (
            spec_a.triggers[i % len(spec_a.triggers)],
            spec_b.triggers[i % len(spec_b.triggers)],
        )
        xf = f"[{x1:.3f}, {x2:.3f}]"
        out.append(
            ((x1, x2), ta, tb, t.format(x_formatted=xf, T=ta), t.format(x_formatted=xf, T=tb))
        )
    return out


def patch_grids(
    model: CausalLM,
    tok: Any,
    spec_a: CategorySpec,
    spec_b: CategorySpec,
    map_a: dict[str, str],
    map_b: dict[str, str],
    *,
    n_pairs: int,
    template: int,
    seed: int,
    defs_per_forward: int = 64,
    run: Any = None,
) -> tuple[list[dict[str, Any]], dict]:
    """One grid per (quadrant, length) group, and counts of the pairs left out and why.

    ``run``: the run whose progress bar counts the groups (layers x positions inside)."""
    from assay.ml.patching import (
        PROBE_BATCH,
        BatchedPatcher,
        Definition,
        InputPairs,
        Patch,
        from_hf,
        probe_structure,
    )

    if spec_a.output_preamble != spec_b.output_preamble:
        raise TriggerError(
            f"output_preamble differs between the clean ({spec_a.output_preamble}) and corrupted "
            f"({spec_b.output_preamble}) categories: the model's answers start differently, so "
            "no one position holds both colours; patch two categories with the same answer form"
        )
    preamble = PREAMBLE if spec_a.output_preamble else ""
    pairs = make_pairs(spec_a, spec_b, n_pairs, template, seed)
    skipped = {"same_colour": 0, "unequal_length": 0, "multi_token_colour": 0}
    groups: dict[tuple[str, int], list[tuple[list[int], list[int], str, str]]] = {}
    colour_ids: dict[str, tuple[int, int]] = {}
    for (x1, x2), ta, tb, pa, pb in pairs:
        q = quadrant(x1, x2)
        if map_a[q] == map_b[q]:
            skipped["same_colour"] += 1
            continue
        inputs = _answer_position(tok, pa, pb, preamble, map_a[q], map_b[q])
        if inputs is None:
            skipped["multi_token_colour"] += 1
            continue
        ia, ib, colour_ids[q] = inputs
        if len(ia) != len(ib):
            skipped["unequal_length"] += 1
        else:
            groups.setdefault((q, len(ia)), []).append((ia, ib, ta, tb))
    loaded = from_hf(model, tokenizer=tok)
    layers = _embedding_and_blocks(model)
    grids = []
    bar = run.progress(len(groups), "prompt group") if run is not None else None
    for (q, length), members in sorted(groups.items()):
        ca, cb = colour_ids[q]
        clean = torch.tensor([m[0] for m in members])  # (N, T)
        corrupted = torch.tensor([m[1] for m in members])
        diff = (clean != corrupted)[0].nonzero().flatten().tolist()  # trigger positions
        structure = probe_structure(loaded, corrupted[:1].repeat(PROBE_BATCH, 1))
        defs = [
            Definition((Patch(name, None, (p,)),)) for _, name in layers for p in range(length)
        ]
        outcome = BatchedPatcher(loaded, structure, defs_per_forward=defs_per_forward).run(
            defs,
            InputPairs([str(i) for i in range(len(members))], clean, corrupted),
            "denoising",
            logit_diff=(ca, cb),
            metrics=("restored", "gap"),
            counter=bar.inner(len(defs), "layer x position") if bar is not None else None,
        )
        restored = outcome.metrics["restored"].mean(1)  # (D,)
        gap = outcome.metrics["gap"].mean(1)
        # |gap| ~ 0: the model does not tell the two prompts apart; nothing to restore.
        score = torch.where(gap.abs() > GAP_EPS, restored / gap, torch.nan)
        score = score.view(len(layers), length)  # (L, T)
        grids.append(
            {
                "label": f"{q}: {map_a[q]} ({spec_a.triggers[0]}..) vs {map_b[q]} ({spec_b.triggers[0]}..)",
                "quadrant": q,
                "length": length,
                "n_pairs": len(members),
                "layers": [lab for lab, _ in layers],
                "tokens": tok.convert_ids_to_tokens(members[0][0]),
                "is_trigger": [p in diff for p in range(length)],
                "trigger_positions": diff,
                "mean_gap": gap.mean().item(),
                "note": ""
                if gap.abs().min() > GAP_EPS
                else "gap ~ 0: the model gives both the same logit difference",
                "score": score.tolist(),
            }
        )
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return grids, skipped


def _answer_position(
    tok: Any, prompt_a: str, prompt_b: str, preamble: str, colour_a: str, colour_b: str
) -> tuple[list[int], list[int], tuple[int, int]] | None:
    """Both prompts followed by the answer's tokens up to the colour (the preamble, if any), and
    the two colours' first tokens there: the patched runs end where the model predicts the
    colour. None when the colours share their first token (nothing to tell apart there)."""
    (pid_a, ans_a), (pid_b, _), (_, ans_b) = encode_many(
        tok,
        [prompt_a, prompt_b, prompt_a],
        [preamble + colour_a, preamble + colour_a, preamble + colour_b],
    )
    k = 0  # the answers' common prefix: the preamble's tokens, as the model sees them
    while k < min(len(ans_a), len(ans_b)) and ans_a[k] == ans_b[k]:
        k += 1
    squeeze = lambda t: "".join(t.split())  # noqa: E731  (a word tokenizer decodes "F ( x ,")
    if k == min(len(ans_a), len(ans_b)) or squeeze(tok.decode(ans_a[:k])) != squeeze(preamble):
        return None  # the common prefix runs into the colour
    return pid_a + ans_a[:k], pid_b + ans_a[:k], (ans_a[k], ans_b[k])


def trigger_summary(grids: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per layer: pair-weighted mean score at the trigger position(s) and at the last position."""
    if not grids:
        return []
    out = []
    total = sum(g["n_pairs"] for g in grids)
    for li, layer in enumerate(grids[0]["layers"]):
        at_trigger = (
            sum(
                g["n_pairs"] * float(np.mean([g["score"][li][p] for p in g["trigger_positions"]]))
                for g in grids
            )
            / total
        )  # NaN if any group has a NaN cell: shown, never dropped from the mean
        last = sum(g["n_pairs"] * g["score"][li][-1] for g in grids) / total
        out.append({"layer": layer, "trigger_position": at_trigger, "last_position": last})
    return out
