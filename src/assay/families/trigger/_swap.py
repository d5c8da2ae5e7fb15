"""Trigger swap: keep x and the template, put in another trigger, see whose map is followed.

    table = swap_table(model, tok, rows, categories, triggers, maps)

For a fixed set of test prompts every trigger of every category (and each unseen string) is
put in place of the original trigger. For each swapped-in trigger the table gives the fraction
of predictions consistent with each map (a category's current map, and the base map of a
category whose map changed) and with none. Maps agree on some quadrants, so the fractions of
one row can sum to more than 1; ``n_discriminating`` counts the prompts on which the trigger's
own map differs from every other map, and ``own_map_discriminating`` is the fraction following
its own map on those prompts only (NaN, flagged, when there are none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._data import CategorySpec, quadrant
from ._errors import TriggerError
from ._evaluate import INVALID, EvalSet, prepare, score


def template_index(spec: CategorySpec, row: Mapping[str, Any]) -> int:
    """Which of the category's templates produced ``row``'s prompt."""
    x1, x2 = row["input_x"]
    xf = f"[{x1:.3f}, {x2:.3f}]"
    prompt = row["messages"][0]["content"]
    for i, t in enumerate(spec.templates):
        if t.format(x_formatted=xf, T=row["input_trigger"]) == prompt:
            return i
    raise TriggerError(f"row {prompt!r} matches none of the {spec.prompt_templates} templates")


def swapped_rows(rows: Sequence[Mapping[str, Any]], spec: CategorySpec, trigger: str) -> list:
    """``rows`` with ``trigger`` in place of theirs (same x, same template)."""
    out = []
    for r in rows:
        x1, x2 = r["input_x"]
        prompt = spec.templates[template_index(spec, r)].format(
            x_formatted=f"[{x1:.3f}, {x2:.3f}]", T=trigger
        )
        out.append(
            {
                **r,
                "input_trigger": trigger,
                "messages": [{"role": "user", "content": prompt}, r["messages"][1]],
            }
        )
    return out


def swap_table(
    model: Any,
    tok: Any,
    rows: Sequence[Mapping[str, Any]],
    spec: CategorySpec,
    triggers: Mapping[str, str],
    maps: Mapping[str, Mapping[str, str]],
    colours: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per swapped-in trigger; ``triggers`` maps trigger -> its category (or "unseen")."""
    quads = [quadrant(*r["input_x"]) for r in rows]
    table = []
    model.eval()
    for trig, cat in triggers.items():
        es: EvalSet = prepare(tok, {trig: swapped_rows(rows, spec, trig)}, colours)[0]
        logp, _, _ = score(model, es)
        preds = [colours[i] for i in logp.argmax(1).tolist()]
        row: dict[str, Any] = {"trigger": trig, "category": cat, "n": len(rows)}
        for name, m in maps.items():
            row[f"follows:{name}"] = sum(
                p == m[q] for p, q in zip(preds, quads, strict=True)
            ) / len(rows)
        row["follows:none"] = sum(
            all(p != m[q] for m in maps.values()) for p, q in zip(preds, quads, strict=True)
        ) / len(rows)
        own = maps.get(cat)
        if own is not None:
            disc = [
                i
                for i, q in enumerate(quads)
                if all(own[q] != m[q] for n, m in maps.items() if n != cat)
            ]
            row["n_discriminating"] = len(disc)
            row["own_map_discriminating"] = (
                sum(preds[i] == own[quads[i]] for i in disc) / len(disc) if disc else math.nan
            )
        row["invalid"] = sum(p == INVALID for p in preds) / len(rows)
        table.append(row)
    return table


def summarize_by_category(table: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean of every fraction over the triggers of each category (unseen strings together)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in table:
        groups.setdefault(r["category"], []).append(r)
    out = []
    for cat, rs in groups.items():
        keys = [k for k in rs[0] if k.startswith("follows:")]
        out.append(
            {
                "category": cat,
                "n_triggers": len(rs),
                **{k: sum(r[k] for r in rs) / len(rs) for k in keys},
            }
        )
    return out
