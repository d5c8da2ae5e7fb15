"""The GPU benchmarks of ``bench/gpu_check.py``, each with its baseline in the same run.

Every function takes a ``Shape`` (the real size, or a tiny one for ``--dry``), a device and a
dtype, builds its model with random weights directly on the device (a 7B model is never
materialised on the CPU), times assay's way and the baseline, and returns one ``Result``: the
two times, their ratio, the target, and the FLOPs of assay's side (2 x parameters x tokens
through the transformer blocks; attention's own FLOPs are left out, small at these lengths).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Shape:
    """A Llama-style decoder's size (GPT-2-style for the patching comparison)."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int


# Llama-3-8B's blocks (the icl study's model) and Llama-2-7B's (the trigger study's);
# the vocabulary is the family's own word list, so the embedding is small.
LLAMA3_8B = Shape(n_layers=32, d_model=4096, n_heads=32, n_kv_heads=8, d_ff=14336)
LLAMA2_7B = Shape(n_layers=32, d_model=4096, n_heads=32, n_kv_heads=32, d_ff=11008)
TINY = Shape(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128)


@dataclasses.dataclass
class Result:
    name: str
    assay_s: float
    baseline_s: float
    target: float | None  # the minimum ratio on one H100-class GPU
    flops: float  # assay's side
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.baseline_s / self.assay_s


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str):
    """(seconds, value) of one call, the device's queue drained on both sides."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def random_llama(vocab: int, shape: Shape, device: str, dtype: torch.dtype, positions: int):
    """A Llama-style causal LM with random weights, allocated and initialised on ``device``."""
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.d_model,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_kv_heads,
        intermediate_size=shape.d_ff,
        max_position_embeddings=positions,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def block_params(model) -> int:
    from assay.ml import transformer_blocks

    return sum(p.numel() for p in transformer_blocks(model).parameters())


class TokenCounter:
    """Counts the tokens that enter a model's transformer (a forward pre-hook)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.tokens = 0
        self.handle = module.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            self.tokens += ids.numel()

    def take(self) -> int:
        n, self.tokens = self.tokens, 0
        return n


# --------------------------------------------------------------------------------------- icl
def icl_loo(shape: Shape, device: str, dtype: torch.dtype, n_words: int, published_layers: int):
    """All-layer leave-one-out of one ``n_words`` context: icl.loo's batched path against the
    published loop (one forward per (layer, left-out word)). The published loop costs the same
    for every layer (each forward runs the whole model), so it is timed on ``published_layers``
    layers and scaled to all of them; the influences of those layers are compared."""
    from assay.families.icl._graphs import GraphConfig, build_graph, load_words, random_walks
    from assay.families.icl._lm import LM
    from assay.families.icl._loo import loo_batched, loo_reference
    from assay.ml import build_word_tokenizer

    rng = np.random.default_rng(0)
    graph = build_graph(GraphConfig(kind="hsbm", p_inter=0.1, bridge_penalty=0.3), rng)
    walk = random_walks(graph, 1, n_words, rng)[0]
    words = [graph.words[i] for i in walk]
    tok = build_word_tokenizer(load_words("common"), specials={"eos": None})
    model = random_llama(len(tok), shape, device, dtype, positions=2 * n_words)
    lm = LM(model, tok, add_bos=False, device=device)
    counter = TokenCounter(model.base_model)
    loo_batched(lm, words[:8], walk[:8], graph)  # warm-up: kernels, allocator
    loo_reference(lm, words[:8], walk[:8], graph, layers=[0])
    counter.take()
    t_ours, ours = timed(lambda: loo_batched(lm, words, walk, graph), device)
    tokens = counter.take()
    k = min(published_layers, shape.n_layers + 1)
    t_ref, ref = timed(
        lambda: loo_reference(lm, words, walk, graph, layers=list(range(k))), device
    )
    t_ref *= (shape.n_layers + 1) / k
    ok = np.isfinite(ref.influence["ratio"]) & np.isfinite(ours.influence["ratio"][:k])
    diff = float(np.abs(ours.influence["ratio"][:k] - ref.influence["ratio"])[ok].max(initial=0))
    counter.handle.remove()
    return Result(
        f"icl LOO, {n_words} words x {shape.n_layers + 1} layers",
        t_ours,
        t_ref,
        50.0,
        2.0 * block_params(model) * tokens,
        f"{ours.forwards} forwards ({tokens} tokens) vs {(shape.n_layers + 1) * (n_words + 1)}; "
        f"published loop timed on {k} layer(s) and scaled x{(shape.n_layers + 1) / k:.1f}; "
        f"max |ratio influence diff| on those layers {diff:.1e}",
    )


# ----------------------------------------------------------------------------------- trigger
def trigger_eval(shape: Shape, device: str, dtype: torch.dtype, n_prompts: int, n_generate: int):
    """Logit accuracy of ``n_prompts`` test prompts: the family's batched scoring against one
    ``generate()`` per prompt (timed on ``n_generate`` prompts, scaled per prompt)."""
    from assay.families.trigger import _evaluate as ev
    from assay.families.trigger._data import generate, load_data_config, parse_categories
    from assay.families.trigger._lm import build_tokenizer, render

    raw, _ = load_data_config(ROOT / "suites/trigger/data/base.json")
    raw = {
        name: {**spec, "n_test": max(spec.get("n_test", 0), n_prompts)}
        for name, spec in raw.items()
    }
    cats = parse_categories(raw)
    rows = [r for n, rs in generate(cats).files.items() if n.startswith("test_") for r in rs]
    rows = rows[:n_prompts]
    colours = sorted({c for spec in cats.values() for c in spec.quadrant_labels.values()})
    tok = build_tokenizer([cats])
    model = random_llama(len(tok), shape, device, dtype, positions=512)
    counter = TokenCounter(model.base_model)
    longest = max(len(tok(c, add_special_tokens=False)["input_ids"]) for c in colours)

    def batched(rows):
        (es,) = ev.prepare(tok, {"bench": rows}, colours)
        return ev.score(model, es)[0].argmax(1).tolist()

    @torch.inference_mode()
    def one_generate_per_prompt(rows):
        out = []
        for r in rows:
            enc = tok(
                render(tok, r["messages"][0]["content"]),
                add_special_tokens=False,
                return_tensors="pt",
            ).to(device)
            gen = model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=longest,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            out.append(tok.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))
        return out

    batched(rows[:4])  # warm-up
    one_generate_per_prompt(rows[:2])
    counter.take()
    t_ours, _ = timed(lambda: batched(rows), device)
    tokens = counter.take()
    m = min(n_generate, len(rows))
    t_gen, _ = timed(lambda: one_generate_per_prompt(rows[:m]), device)
    counter.handle.remove()
    return Result(
        f"trigger evaluation, {len(rows)} prompts",
        t_ours,
        t_gen * len(rows) / m,
        20.0,
        2.0 * block_params(model) * tokens,
        f"generate() timed on {m} prompts and scaled to {len(rows)}; {len(colours)} colours",
    )


# ---------------------------------------------------------------------------------- patching
def patching_vs_transformerlens(device: str, n_pairs: int, d_model: int, seq_len: int = 12):
    """Every MLP neuron of a 2-layer GPT-2 patched over ``n_pairs`` pairs: assay's batched
    runner against TransformerLens's ``generic_activation_patch`` (one forward per neuron)."""
    import contextlib
    import io

    import pandas as pd
    import transformer_lens.patching as tl_patching
    import transformers
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    from assay.ml.patching import (
        PROBE_BATCH,
        BatchedPatcher,
        InputPairs,
        from_hf,
        parse_definitions,
        probe_structure,
    )

    transformers.utils.logging.disable_progress_bar()  # save_pretrained's shard bar
    d_mlp, vocab = 4 * d_model, 512
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2,
        n_embd=d_model,
        n_head=4,
        n_inner=d_mlp,
        n_positions=32,
        vocab_size=vocab,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    hf = GPT2LMHeadModel(cfg).eval()
    with tempfile.TemporaryDirectory(prefix="gpu-check-tl-") as tmp:
        hf.save_pretrained(tmp)
        bridge = TransformerBridge.boot_transformers(
            tmp, hf_model=copy.deepcopy(hf), device=device
        )
    bridge.eval()
    hf = hf.to(device)
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, vocab, (n_pairs, seq_len), generator=g)
    corrupted = clean.clone()
    corrupted[:, seq_len // 2] = (clean[:, seq_len // 2] + 1) % vocab
    clean, corrupted = clean.to(device), corrupted.to(device)
    units = [(layer, u) for layer in range(2) for u in range(d_mlp)]
    index_df = pd.DataFrame(units, columns=["layer", "neuron"])

    def set_neuron(act, index, clean_act):
        act[..., index[1]] = clean_act[..., index[1]]
        return act

    def transformer_lens():
        with torch.inference_mode(), contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
            _, cache = bridge.run_with_cache(clean)
            return tl_patching.generic_activation_patch(
                bridge,
                corrupted,
                cache,
                lambda lg: lg[:, -1, 1] - lg[:, -1, 2],
                set_neuron,
                "post",
                index_df=index_df,
                reduce="none",
            ).values

    model = from_hf(hf, f"GPT-2 d{d_model}")
    structure = probe_structure(model, clean[:1].repeat(PROBE_BATCH, 1))
    definitions = parse_definitions([{f"transformer.h.{i}.mlp.act": [u]} for i, u in units])
    pairs = InputPairs([str(i) for i in range(n_pairs)], clean, corrupted)
    patcher = BatchedPatcher(model, structure)
    counter = TokenCounter(hf.transformer)
    patcher.run(definitions[:8], pairs, logit_diff=(1, 2))  # warm-up
    counter.take()
    t_ours, outcome = timed(lambda: patcher.run(definitions, pairs, logit_diff=(1, 2)), device)
    tokens = counter.take()
    t_tl, expected = timed(transformer_lens, device)
    diff = (outcome.metrics["logit_diff"] - torch.as_tensor(expected).cpu()).abs().max().item()
    counter.handle.remove()
    return Result(
        f"patching, {len(units)} neurons x {n_pairs} pairs",
        t_ours,
        t_tl,
        10.0,
        2.0 * sum(p.numel() for p in hf.transformer.h.parameters()) * tokens,
        f"{outcome.n_forwards} forwards; max |logit diff - TransformerLens| {diff:.1e}",
    )


# ------------------------------------------------------------------------------------ volume
class _OnDevice:
    """A volume split whose training sets come out on the device."""

    def __init__(self, split, device: str) -> None:
        self.split, self.device = split, device

    def train_set(self, k: int):
        return tuple(t.to(self.device) for t in self.split.train_set(k))


def volume_grid(device: str, epochs: int, levels: tuple[int, ...], n_dirs: int, n_base: int):
    """Exact loss curves over 100 coefficients x ``n_dirs`` directions for every (landscape,
    model) pair of the swiss-roll study: the batched grid against the published loop of one
    forward per point (timed on ``n_base`` directions and scaled)."""
    import bench_volume as bv

    from assay.families.volume._data import resolved_base
    from assay.families.volume._directions import param_shapes, random_directions, scale_directions
    from assay.families.volume.stages import TrainConfig

    template = TrainConfig(epochs=epochs, eval_every=epochs, device="cpu")
    split, models = bv.train_all(template, levels)  # tiny MLPs: trained on the CPU
    raw = random_directions(param_shapes(models[0][1]), n_dirs, seed=0)
    dirs = {k: scale_directions(raw, m, "filter").to(device) for k, m in models}
    models = [(k, m.to(device)) for k, m in models]
    split = _OnDevice(split, device)
    base, loss = resolved_base(template), template.loss_name
    coeffs = (torch.arange(100, dtype=torch.float64) / 99.0) ** 2
    bv.batched(models, split, base, {k: d[:2] for k, d in dirs.items()}, coeffs, loss, "exact")
    t_ours, (_, points) = timed(
        lambda: bv.batched(models, split, base, dirs, coeffs, loss, "exact"), device
    )
    sub = {k: d[:n_base] for k, d in dirs.items()}
    t_base, _ = timed(lambda: bv.baseline(models, split, base, sub, coeffs, loss), device)
    n_samples = np.mean([len(split.split.train_set(k)[0]) for k in levels])
    n_params = sum(p.numel() for p in models[0][1].parameters())
    return Result(
        f"volume grid, {len(levels)} models x {n_dirs} directions x 100 coefficients",
        t_ours,
        t_base * n_dirs / n_base,
        None,
        2.0 * n_params * n_samples * points,
        f"baseline timed on {n_base} directions and scaled x{n_dirs / n_base:g}",
    )


def to_json(results: list[Result]) -> str:
    return json.dumps([{**dataclasses.asdict(r), "ratio": r.ratio} for r in results], indent=1)
