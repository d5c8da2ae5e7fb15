"""icl.train: train a tiny causal LM from scratch on random walks (in-context graph tracing).

    assay run suites/icl/smoke.yaml          # trains this first, then the analyses use it

Every training sequence is a walk on a freshly drawn graph whose nodes get the words of the
graph's word list (``graph.words``, 16 by default) in a fresh random order, so no word has a
fixed neighbour: the only way to predict the next
word is to read the graph off the context (an induction-like circuit). That is what makes the
Park-style analyses meaningful on a model trained here. Evaluation logs the *neighbour
probability* p_nbr(n) = Σ_{w ∈ N(node_n)} p(w | the first n words), the probability mass the
model puts on legal next words after n words of context: it rises with n when the model learns
in context (chance, spreading mass over the N graph words: mean degree / N).

Artifacts: ``model/`` (model + tokenizer, save_pretrained), ``snapshots/step_<s>.pt``
(state_dicts at ``snapshot_steps``, for stagewise CSS), ``history.json``.
"""

from __future__ import annotations

import functools
import time
from typing import Literal, TypedDict

import numpy as np
import torch
from pydantic import Field, field_validator

from assay import Run, stage
from assay.ml import TorchConfig, build_model, build_word_tokenizer, lm_forward, setup_torch

from ._checks import check_train
from ._graphs import GraphConfig, build_graph, load_words, random_walks

# p_nbr is reported after n words of context (the prediction at 0-based position n - 1); the
# last prediction of a sequence of seq_len words is at n = seq_len - 1 (nothing follows n)
EVAL_CONTEXTS = (8, 16, 32, 64, 127)
# the conformance (smoke) training run: seconds; every analysis stage's smoke config uses it,
# so one upstream run serves them all
SMOKE_TRAIN = {
    "steps": 20,
    "eval_every": 20,
    "d_model": 32,
    "n_layers": 2,
    "batch_size": 4,
    "seq_len": 32,
    "max_positions": 96,
    "eval_walks": 4,
}


class TrainConfig(TorchConfig):
    # each step draws its graph from these in turn; words are re-drawn for every sequence
    graphs: tuple[GraphConfig, ...] = Field(
        (GraphConfig(kind="grid"), GraphConfig(kind="hsbm")),
        description="graphs whose random walks are the training data (one per step, in turn)",
    )
    # the tokenizer's vocabulary: these lists plus the graphs' word lists. Words outside the
    # graphs' lists never occur in training: they are the "random vocabulary" of icl.inject
    vocab: tuple[str, ...] = Field(
        ("common", "semantic"), description="word lists the graphs' words are drawn from"
    )
    # llama = rotary positions: the previous-token attention an induction circuit needs is
    # easier to learn than with GPT-2's learned positions (measured: README)
    arch: Literal["gpt2", "llama", "qwen2"] = Field(
        "llama", description="model architecture (HF config class), built from scratch"
    )
    n_layers: int = Field(3, ge=1, description="transformer layers")
    d_model: int = Field(96, ge=8, description="hidden size")
    n_heads: int = Field(4, ge=1, description="attention heads")
    max_positions: int = Field(
        256,
        ge=8,
        description="position embeddings; above seq_len so analyses can probe longer contexts",
    )
    seq_len: int = Field(128, ge=8, description="training sequence length (words)")
    steps: int = Field(3000, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="sequences per step")
    lr: float = Field(
        3e-3,
        gt=0,
        description="peak learning rate (AdamW; 3e-3 with warmup is stable for this tiny model)",
    )
    warmup_steps: int = Field(
        100, ge=0, description="linear warmup steps, then cosine decay to 10%"
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    eval_every: int = Field(
        500,
        ge=1,
        description="evaluate (neighbour probability, eval loss) every this many steps and at the end",
    )
    eval_walks: int = Field(64, ge=1, description="walks per graph in each evaluation")
    snapshot_steps: tuple[int, ...] = Field(
        (), description="steps whose weights are kept (for icl.stagewise)"
    )

    @field_validator("graphs")
    @classmethod
    def _some(cls, v):
        if not v:
            raise ValueError("graphs is empty; give at least one, e.g. [{kind: grid}]")
        return v


def vocabulary(config: TrainConfig) -> tuple[str, ...]:
    return _vocabulary((*(g.words for g in config.graphs), *config.vocab))


@functools.lru_cache(maxsize=8)
def _vocabulary(lists: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for name in lists:
        seen.update(dict.fromkeys(load_words(name)))
    return tuple(seen)


def make_tokenizer(config: TrainConfig):
    # no BOS: contexts start with a word, whose loss is undefined (NaN) and excluded
    return build_word_tokenizer(vocabulary(config), specials={"bos": None, "eos": None})


def make_model(config: TrainConfig, tokenizer):
    return build_model(
        config.arch,
        vocab_size=len(tokenizer),
        d_model=config.d_model,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        max_positions=config.max_positions,
        seed=config.seed,
        pad_token_id=tokenizer.pad_token_id,
        **(
            {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
            if config.arch == "gpt2"
            else {}
        ),
    )


def sample_batch(config: TrainConfig, graph_config: GraphConfig, n: int, rng, tokenizer):
    """(tokens (n, T) ids, walks (n, T) nodes, graph, node_ids (n, N) token id of each node)."""
    graph = build_graph(graph_config, rng)
    walks = random_walks(graph, n, config.seq_len, rng)
    pool = np.array(tokenizer.convert_tokens_to_ids(load_words(graph_config.words)))
    node_ids = pool[np.argsort(rng.random((n, len(pool))), axis=1)[:, : graph.n_nodes]]
    tokens = np.take_along_axis(node_ids, walks, axis=1)
    return torch.from_numpy(tokens), walks, graph, node_ids


class GraphEval(TypedDict):
    p_nbr: list[float]  # (T,) neighbour probability at every position, mean over eval walks
    loss: float  # mean next-word loss over the eval walks


@torch.no_grad()
def neighbour_probability(model, config: TrainConfig, rng, tokenizer) -> dict[str, GraphEval]:
    """Per training graph kind: p_nbr at every position (mean over eval walks), and the loss."""
    out: dict[str, GraphEval] = {}
    model.eval()
    for gc in dict.fromkeys(config.graphs):
        tokens, walks, graph, node_ids = sample_batch(
            config, gc, config.eval_walks, rng, tokenizer
        )
        res = lm_forward(model, tokens, hidden_states=False)
        prob = res.logits.float().softmax(-1)  # (B, T, V)
        # legal next words of the node at t, as vocabulary ids, per sequence
        nbr = torch.from_numpy(graph.edges[walks]).float()  # (B, T, N)
        ids = torch.from_numpy(node_ids)[:, None, :].expand(-1, prob.shape[1], -1)  # (B, T, N)
        p_nodes = torch.gather(prob, 2, ids)
        p_nbr = (p_nodes * nbr).sum(-1).mean(0)  # (T,)
        out[gc.kind] = {"p_nbr": p_nbr.tolist(), "loss": float(res.token_loss.nanmean())}
    model.train()
    return out


@stage("icl.train", config=TrainConfig, version=1, smoke=SMOKE_TRAIN, check=check_train)
def train(config: TrainConfig, run: Run) -> dict:
    """Train; see the module docstring. Resumes from the last checkpoint after a kill."""
    device, dtype = setup_torch(config)
    tokenizer = make_tokenizer(config)
    model = make_model(config, tokenizer).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, config))
    state = run.load_checkpoint() or {"step": 0, "history": []}
    if state["step"]:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
    history = state["history"]
    t0 = time.perf_counter()
    model.train()
    bar = run.progress(config.steps, "step", start=state["step"])  # resumed: "resumed at step s"
    for step in range(state["step"], config.steps):
        rng = np.random.default_rng(
            [config.seed, step]
        )  # data of step s: resumable, exact; eval uses [seed, 2**31]
        gc = config.graphs[step % len(config.graphs)]
        tokens, *_ = sample_batch(config, gc, config.batch_size, rng, tokenizer)
        loss = lm_forward(model, tokens.to(device), hidden_states=False).token_loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        done = step + 1
        if done in config.snapshot_steps:
            with run.write_artifact(f"snapshots/step_{done}.pt") as tmp:
                torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
        if done % config.eval_every == 0 or done == config.steps:
            bar.note("evaluating")
            ev = neighbour_probability(
                model, config, np.random.default_rng([config.seed, 2**31]), tokenizer
            )
            values = {"train_loss": float(loss.detach()), "seconds": time.perf_counter() - t0}
            for kind, r in ev.items():
                values[f"eval_loss/{kind}"] = r["loss"]
                for n in EVAL_CONTEXTS:
                    if n < config.seq_len:
                        values[f"p_nbr/{kind}/n{n}"] = r["p_nbr"][n - 1]
            history.append({"step": done, **values})
            run.log_metrics(done, **values)
            run.save_checkpoint(
                {
                    "step": done,
                    "model": model.state_dict(),
                    "history": history,
                    "optim": opt.state_dict(),
                    "sched": sched.state_dict(),
                }
            )
        bar.update()
    bar.close()
    _save_model(run, model, tokenizer)
    run.save_json("history.json", history)
    final = {k: v for k, v in history[-1].items() if k != "step"}
    return {**final, "n_params": sum(p.numel() for p in model.parameters()), "dtype": str(dtype)}


def _lr_factor(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return float(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))  # cosine to 10%


def _save_model(run: Run, model, tokenizer) -> None:
    """model/ = save_pretrained model + tokenizer, renamed into place as a whole (modes follow
    the umask: the weight writer's own 0600 would keep a group out of a shared root)."""
    with run.write_artifact_dir("model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
