"""Heads, patterns, attribution and path patching against exact patching; padded batches;
environment-made inputs; the float64 noise rule; the analysis' numbers."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import assay
from assay import AssayError
from assay.families.patching._models import load_model
from assay.families.patching._results import top_bars
from assay.ml.patching import (
    PROBE_BATCH,
    BatchedPatcher,
    InputPairs,
    attribution_patch,
    compute_metrics,
    parse_definitions,
    path_patch,
    probe_structure,
    undefined_counts,
)


@pytest.fixture(scope="module")
def gpt2(gpt2_dir, token_pairs):
    model = load_model(gpt2_dir)
    clean, corrupted = token_pairs
    pairs = InputPairs([f"s{i}" for i in range(len(clean))], clean, corrupted)
    return model, probe_structure(model, clean[:1].repeat(PROBE_BATCH, 1)), pairs


def test_heads_z_and_patterns_match_transformerlens(gpt2_dir, gpt2):
    pytest.importorskip("transformer_lens")
    import transformer_lens.patching as tl
    from transformer_lens.model_bridge import TransformerBridge

    model, structure, pairs = gpt2
    bridge = TransformerBridge.boot_transformers(
        str(gpt2_dir), hf_model=copy.deepcopy(model.root), device="cpu"
    )
    bridge.eval()
    _, cache = bridge.run_with_cache(pairs.clean)

    def metric(logits):
        return (logits[:, -1, 3] - logits[:, -1, 4]).mean()

    z = tl.get_act_patch_attn_head_out_by_pos(bridge, pairs.corrupted, cache, metric)  # (L,T,H)
    pattern = tl.get_act_patch_attn_head_pattern_all_pos(bridge, pairs.corrupted, cache, metric)
    spots = [(layer, p) for layer in range(2) for p in (2, -1)]
    defs = parse_definitions(
        [
            {f"transformer.h.{i}.attn": {"heads": [h], "positions": [p]}}
            for i, p in spots
            for h in range(4)
        ]  # noqa: E501
        + [
            {f"transformer.h.{i}.attn": {"heads": [h], "site": "pattern"}}
            for i in range(2)
            for h in range(4)
        ]  # noqa: E501
    )
    out = BatchedPatcher(model, structure).run(defs, pairs, logit_diff=(3, 4))
    ours = out.metrics["logit_diff"].mean(1).float()
    expected = torch.cat([z[i, p] for i, p in spots] + [pattern[0], pattern[1]])
    torch.testing.assert_close(ours, expected, atol=2e-5, rtol=1e-4)
    assert out.definitions[0].label() == "transformer.h.0.attn.z[h0]@2"
    assert out.definitions[-1].to_json() == {
        "transformer.h.1.attn": {"heads": [3], "site": "pattern"}
    }  # noqa: E501


def test_bad_heads_fail_clearly(gpt2):
    model, structure, pairs = gpt2
    with pytest.raises(
        AssayError, match=r"head\(s\) \[4\] of 'transformer.h.0.attn' out of range"
    ):
        BatchedPatcher(model, structure).run(
            parse_definitions([{"transformer.h.0.attn": {"heads": [4]}}]), pairs
        )
    with pytest.raises(AssayError, match="not an attention module"):
        BatchedPatcher(model, structure).run(
            parse_definitions([{"transformer.h.0.mlp": {"heads": [0]}}]), pairs
        )


def test_attribution_is_exact_where_linear_and_close_elsewhere(gpt2):
    model, structure, pairs = gpt2
    neurons = [{f"transformer.h.{i}.mlp.act": [u]} for i in range(2) for u in range(0, 128, 3)]
    linear = [{"lm_head": [3]}, {"lm_head": [4, 9]}, {"transformer.ln_f": "all"}]
    defs = parse_definitions(neurons + linear + [{"transformer.h.1.attn": {"heads": [2]}}])
    exact = BatchedPatcher(model, structure).run(defs, pairs, logit_diff=(3, 4))
    estimate = attribution_patch(model, structure, defs, pairs, logit_diff=(3, 4))
    e, a = exact.metrics["restored"], estimate.metrics["restored"]
    k = len(neurons)
    # the logit difference is linear in the unembedding's outputs: the estimate is exact there
    torch.testing.assert_close(a[k : k + 2], e[k : k + 2], atol=1e-6, rtol=1e-5)
    assert float(torch.corrcoef(torch.stack([a[:k].flatten(), e[:k].flatten()]))[0, 1]) > 0.95
    torch.testing.assert_close(estimate.metrics["gap"], exact.metrics["gap"])


def test_path_patching_reduces_to_activation_patching_and_the_direct_effect(gpt2):
    from assay.ml import capture_activations

    model, structure, pairs = gpt2
    sender = parse_definitions([{"transformer.h.0.mlp": "all"}])[0]
    receiver = parse_definitions([{"lm_head": "all"}])[0]
    nothing_frozen = path_patch(model, structure, pairs, sender, receiver, logit_diff=(3, 4))
    exact = BatchedPatcher(model, structure).run([sender], pairs, logit_diff=(3, 4))
    torch.testing.assert_close(nothing_frozen.metrics["restored"], exact.metrics["restored"])
    frozen = ["transformer.h.*.attn", "transformer.h.*.mlp"]
    direct = path_patch(model, structure, pairs, sender, receiver, frozen, logit_diff=(3, 4))
    m = model.root
    with torch.no_grad(), capture_activations(m, ["transformer.h.0.mlp", "transformer.h.1"]) as a:
        m(input_ids=pairs.clean)
        mlp_clean = a["transformer.h.0.mlp"].clone()
        m(input_ids=pairs.corrupted)
        resid = a["transformer.h.1"]  # the last block's output: the final residual stream
        logits = m.lm_head(m.transformer.ln_f(resid + mlp_clean - a["transformer.h.0.mlp"]))
        base = m.lm_head(m.transformer.ln_f(resid))
    want = (logits[:, -1, 3] - logits[:, -1, 4]) - (base[:, -1, 3] - base[:, -1, 4])
    torch.testing.assert_close(direct.metrics["restored"][0].float(), want, atol=1e-5, rtol=1e-4)
    with pytest.raises(AssayError, match="frozen entry 'nope.*' matches no module"):
        path_patch(model, structure, pairs, sender, receiver, ["nope.*"])


def test_padded_batches_equal_unpadded_runs(gpt2_dir, tmp_path):
    import json

    from assay.families.patching._inputs import load_pairs

    model = load_model(gpt2_dir)
    g = torch.Generator().manual_seed(3)
    rows = []
    for i, length in enumerate([5, 7, 5, 6, 7]):
        clean = torch.randint(0, 50, (length,), generator=g)
        corrupted = clean.clone()
        corrupted[1] = (clean[1] + 5) % 50
        rows.append({"id": f"p{i}", "clean": clean.tolist(), "corrupted": corrupted.tolist()})
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = load_pairs([tmp_path / "pairs.jsonl"], model)
    assert pairs.lengths.tolist() == [5, 7, 5, 6, 7] and pairs.clean.shape == (5, 7)
    structure = probe_structure(model, pairs.corrupted[1:2].repeat(PROBE_BATCH, 1))
    defs = parse_definitions(
        [
            {"transformer.h.0.mlp": {"units": [1, 2], "positions": [-1]}},
            {"transformer.h.0": {"units": "all", "positions": [1]}},
            {"transformer.h.1.attn": {"heads": [1], "positions": [-2]}},
        ]
    )
    padded = BatchedPatcher(model, structure, defs_per_forward=2).run(
        defs, pairs, logit_diff=(3, 4)
    )
    for length in (5, 6, 7):
        keep = [i for i, r in enumerate(rows) if len(r["clean"]) == length]
        sub = InputPairs(
            [rows[i]["id"] for i in keep],
            torch.tensor([rows[i]["clean"] for i in keep]),
            torch.tensor([rows[i]["corrupted"] for i in keep]),
        )
        alone = BatchedPatcher(model, probe_structure(model, sub.clean[:1].repeat(5, 1))).run(
            defs, sub, logit_diff=(3, 4)
        )
        for name in ("logit_diff", "l2", "restored"):
            torch.testing.assert_close(
                padded.metrics[name][:, keep], alone.metrics[name], atol=2e-5, rtol=1e-4
            )
    with pytest.raises(AssayError, match=r"past the end of input 'p0' \(length 5\)"):
        BatchedPatcher(model, structure).run(
            parse_definitions([{"transformer.h.0": {"units": [0], "positions": [6]}}]), pairs
        )


def test_inputs_from_an_environment(tmp_path, capsys):
    from assay._cli import main

    out = tmp_path / "pairs.npz"
    args = ["patching", "inputs", "--env", "CartPole-v1", "--n", "12", "-o", str(out)]
    assert main([*args, "--corrupt", "negate:2,3"]) == 0
    with np.load(out) as f:
        clean, corrupted = f["clean"], f["corrupted"]
    assert clean.shape == (12, 4) and len(np.unique(clean[:, 0])) > 1
    np.testing.assert_array_equal(corrupted[:, 2:], -clean[:, 2:])
    np.testing.assert_array_equal(corrupted[:, :2], clean[:, :2])
    assert main([*args, "--corrupt", "shuffle", "--corrupt", "set:0=1.5"]) == 0
    with np.load(out) as f:
        clean, corrupted = f["clean"], f["corrupted"]
    assert (corrupted[:, 0] == 1.5).all()
    for i in range(12):  # every partner is another row of the clean set
        hits = [j for j in range(12) if np.array_equal(clean[j, 1:], corrupted[i, 1:])]
        assert hits and i not in hits
    capsys.readouterr()
    assert main([*args, "--corrupt", "flip:2"]) == 2
    assert "unknown --corrupt spec 'flip:2'; valid: negate:DIMS" in capsys.readouterr().err
    assert main([*args, "--corrupt", "noise:-1"]) == 2
    assert "std must be a number > 0" in capsys.readouterr().err


def test_directions_below_the_noise_floor_are_undefined_not_noise(dqn_zip, cartpole_pairs_npz):
    from assay.families.patching._inputs import load_pairs

    base = torch.tensor([[10.0, -3.0, 2.0]])
    unit = torch.tensor([0.0, 1.0, 0.0])
    patched = torch.stack([base + 1e-6 * unit, base + 0.1 * unit])  # (K=2, n=1, O)
    m = compute_metrics(patched, base, base + unit, base, logit_diff=None)
    assert math.isnan(m["cosine_to_source"][0, 0]) and m["cosine_to_source"][1, 0] == 1.0
    assert m["cosine_to_source"].dtype == torch.float64
    assert undefined_counts(m)["cosine_to_source"] == 1
    # gap of 1e-5 on outputs of size 10 in float32: below the noise floor, so undefined
    m = compute_metrics(patched, base, base + 1e-5, base, logit_diff=(0, 1))
    assert torch.isnan(m["normalised"]).all()

    # float32 against float64 runs of the same DQN: where both say defined, they agree
    runs = {}
    for dtype in (torch.float32, torch.float64):
        model = load_model(dqn_zip)
        model.root.to(dtype)
        q_net = model.root.q_net
        model.fn = lambda x, readout, q_net=q_net: q_net.q_net(q_net.features_extractor(x))
        pairs = load_pairs([cartpole_pairs_npz], model)
        pairs = InputPairs(pairs.ids, pairs.clean.to(dtype), pairs.corrupted.to(dtype))
        structure = probe_structure(model, pairs.clean[:1].repeat(PROBE_BATCH, 1))
        defs = parse_definitions([{f"q_net.{i}": [u]} for i in (0, 2, 4) for u in range(2)])
        runs[dtype] = BatchedPatcher(model, structure).run(defs, pairs).metrics
    for name in ("cosine_to_source", "normalised"):
        a, b = runs[torch.float32][name], runs[torch.float64][name]
        both = torch.isfinite(a) & torch.isfinite(b)
        assert both.sum() > 0.5 * both.numel()
        assert (a[both] - b[both]).abs().max() < 0.05, name


def test_top_bars_carry_the_interval_of_the_mean():
    records = [
        {
            "index": i,
            "label": f"u{i}",
            "direction": "denoising",
            "unit": i,
            "module": "m",
            "positions": None,
            "normalised_score": 0.5,
            "metrics": {"l2": {"mean": m, "std": s, "n": n, "min": 0, "max": 1}},
        }
        for i, (m, s, n) in enumerate([(1.0, 0.5, 10), (3.0, 1.0, 4), (2.0, 0.0, 1)])
    ]
    bars = top_bars(records, "l2")
    assert [b["label"] for b in bars] == ["u1", "u2", "u0"]
    from scipy import stats

    want = stats.t.ppf(0.975, 3) * 1.0 * math.sqrt(4 / 3) / 2  # sample std from population std
    assert bars[0]["half_width"] == pytest.approx(want) and bars[0]["n"] == 4
    assert math.isnan(bars[1]["half_width"])  # n = 1: no interval
    assert all(math.isnan(b["half_width"]) for b in top_bars(records, "normalised_score"))


def test_attribution_through_the_stage_and_timings_are_not_metrics(
    tmp_path, dqn_zip, cartpole_pairs_npz
):
    from assay.analysis._frames import metric_columns, records_frame
    from assay.families.patching.stages import PatchingRunConfig

    (tmp_path / "defs.json").write_text('[{"q_net.0": [1]}, {"output_logits": [0]}]')
    config = PatchingRunConfig(
        model=str(dqn_zip),
        inputs=[str(cartpole_pairs_npz)],
        definitions=str(tmp_path / "defs.json"),
        method="attribution",
        num_threads=1,
    )
    record = assay.run_config(config, root=tmp_path / "runs")
    assert record.status is assay.RunStatus.DONE, record.error
    assert record.results["method"] == "attribution"
    assert record.results["top"][0]["restored_mean"] is not None
    columns = metric_columns(records_frame([record]))
    assert "results.n_definitions" in columns
    assert not [c for c in columns if c.endswith("_s") or c.endswith("threads")]
    with pytest.raises(ValueError, match="need method exact"):
        PatchingRunConfig(**{**config.model_dump(), "metrics": ("l2",)})
