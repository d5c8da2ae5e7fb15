"""The language model side: tokenizer, chat encoding with answer-only labels, model, LoRA.

    tok = build_tokenizer(categories_list, extra_words=["zorblat"])
    prompt_ids, answer_ids = encode(tok, row["messages"][0]["content"], row["output"])
    model = build_lm(tok, arch="llama", d_model=64, n_layers=2, n_heads=4, seed=0)

Text to tokens: ``assay.ml.build_word_tokenizer(split="digits_punctuation")``, so numbers are
split into single digits and punctuation into single symbols (a whitespace split would make
every number its own word): the vocabulary is a few dozen pieces and the model has to read the
sign of x1 and x2 to find the quadrant. A conversation is rendered by the tokenizer's chat template; the answer tokens are
whatever the template puts after the generation prompt (the colour and the end-of-turn token).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import torch

from ._data import PREAMBLE, CategorySpec
from ._errors import TriggerError

if TYPE_CHECKING:
    import peft
    import transformers

    class Generative(transformers.PreTrainedModel, transformers.GenerationMixin):
        """What ``AutoModelForCausalLM`` builds (``LlamaForCausalLM`` etc.): a model that
        generates."""

    # The family's model: a causal LM, or one wrapped with LoRA adapters.
    CausalLM: TypeAlias = Generative | peft.PeftModel

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' <|end|> ' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
IGNORE = -100  # label of a position that does not count in the loss
# Default LoRA targets by architecture: every projection (a tiny model needs them all).
LORA_TARGETS = {
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
}


def build_tokenizer(
    category_sets: Sequence[Mapping[str, CategorySpec]],
    extra_words: Sequence[str] = (),
    out_dir: str | Path | None = None,
) -> Any:
    """A word-level tokenizer covering every template, trigger, colour and ``extra_words``."""
    from assay.ml import build_word_tokenizer

    texts = [*"0123456789", "[ ] , . -", PREAMBLE, *extra_words]
    for cats in category_sets:
        for spec in cats.values():
            texts += [t.replace("{x_formatted}", " ").replace("{T}", " ") for t in spec.templates]
            texts += [*spec.triggers, *spec.quadrant_labels.values()]
    tok = build_word_tokenizer(
        texts,
        specials={"pad": "<pad>", "bos": None, "eos": END, "unk": "<unk>"},
        chat_template=CHAT_TEMPLATE,
        split="digits_punctuation",
    )
    tok.add_special_tokens({"additional_special_tokens": [USER, ASSISTANT]})
    if out_dir is not None:
        tok.save_pretrained(str(out_dir))
    return tok


def render(tok: Any, prompt: str, answer: str | None = None) -> str:
    messages = [{"role": "user", "content": prompt}]
    if answer is None:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    messages.append({"role": "assistant", "content": answer})
    return tok.apply_chat_template(messages, tokenize=False)


def encode_many(
    tok: Any, prompts: Sequence[str], answers: Sequence[str]
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids ending in the generation prompt, answer ids) per (prompt, answer) pair.

    The answer ids are the tokens the chat template puts after the generation prompt. A
    template whose full conversation does not start with the generation prompt's tokens cannot
    separate prompt from answer: that is an error, not a guess.
    """
    if len(prompts) != len(answers):
        raise ValueError("encode_many needs as many answers as prompts")
    prompt_text = [render(tok, p) for p in prompts]
    full_text = [render(tok, p, a) for p, a in zip(prompts, answers, strict=True)]
    p_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    f_ids = tok(full_text, add_special_tokens=False)["input_ids"]
    out = []
    for i, (p, f) in enumerate(zip(p_ids, f_ids, strict=True)):
        if f[: len(p)] != p or len(f) == len(p):
            raise TriggerError(
                f"the tokenizer's chat template does not render the answer as a continuation of "
                f"the generation prompt (row {i}: {prompt_text[i]!r}); give the model a chat "
                "template whose assistant turn starts where add_generation_prompt ends"
            )
        out.append((list(p), list(f[len(p) :])))
    return out


def training_example(prompt_ids: list[int], answer_ids: list[int]) -> tuple[list[int], list[int]]:
    """input ids and labels: the prompt positions are IGNORE, only the answer counts."""
    return prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids


def collate(
    examples: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-padded (B, T) input_ids, attention_mask and labels (IGNORE on padding)."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over answer tokens only.

    logits (B, T, V) predict token t+1 at position t; labels (B, T) are IGNORE on the prompt
    and padding, so the prompt's random digits never enter the loss.
    """
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE,
    )


def build_lm(
    tok: Any,
    *,
    arch: str,
    d_model: int,
    n_layers: int,
    n_heads: int,
    max_positions: int,
    d_ff: int | None,
    seed: int,
) -> Generative:
    """An untrained causal LM sized to the tokenizer (dropout 0: evaluation is deterministic)."""
    from assay.ml import build_model

    # GPT-2 configs default to dropout 0.1; the others to 0. Small clean data needs none.
    extra = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0} if arch == "gpt2" else {}
    model = build_model(
        arch,
        vocab_size=len(tok),
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        max_positions=max_positions,
        d_ff=d_ff,
        seed=seed,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        **extra,
    )
    return cast("Generative", model)  # task "causal-lm": an AutoModelForCausalLM


def add_lora(
    model: Generative,
    *,
    r: int,
    alpha: float,
    dropout: float,
    rslora: bool,
    targets: Sequence[str] | None,
    seed: int,
) -> peft.PeftModel:
    """Wrap ``model`` with fresh LoRA adapters (initialised from ``seed``) on ``targets``."""
    import peft

    arch = getattr(model.config, "model_type", "")
    if targets is None:
        if arch not in LORA_TARGETS:
            raise TriggerError(
                f"no default LoRA target modules for model type {arch!r}; set target_modules "
                f"to names of its linear layers (known defaults: {sorted(LORA_TARGETS)})"
            )
        targets = LORA_TARGETS[arch]
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if _is_linear(m)}
    missing = sorted(set(targets) - names)
    if missing:
        raise TriggerError(
            f"LoRA target module(s) {missing} are not linear layers of this {arch} model; "
            f"valid names: {', '.join(sorted(names))}"
        )
    config = peft.LoraConfig(
        r=r,
        # peft annotates lora_alpha as int but only divides by it (alpha / r): a float is right
        lora_alpha=alpha,  # type: ignore[arg-type]
        lora_dropout=dropout,
        target_modules=list(targets),
        use_rslora=rslora,
        bias="none",
        task_type="CAUSAL_LM",
        fan_in_fan_out=arch == "gpt2",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the adapter's A matrices: a seed re-initialises them
        return peft.get_peft_model(model, config)


def _is_linear(m: torch.nn.Module) -> bool:
    return isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"


# --------------------------------------------------------------------------- saving/loading
_BASE_CACHE: dict[tuple[str, str], tuple[Any, dict[str, torch.Tensor]]] = {}


def load_base(path: str | Path, sha256: str, device: str, dtype: torch.dtype) -> Generative:
    """A saved base model; one process keeps its weights in memory across runs (seeds)."""
    import transformers

    from assay.ml import load_hf_model

    key = (str(Path(path).resolve()), sha256)
    if key not in _BASE_CACHE:
        model = load_hf_model(path, task="causal-lm", dtype=torch.float32, device="cpu")
        _BASE_CACHE.clear()  # one base at a time: a sweep shares one
        _BASE_CACHE[key] = (model.config, {k: v.clone() for k, v in model.state_dict().items()})
    config, state = _BASE_CACHE[key]
    model = transformers.AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    model.load_state_dict(state)
    return model.to(device=device, dtype=dtype)


def save_model_dir(model: CausalLM, tok: Any, target: Path) -> None:
    """``save_pretrained`` into a temporary folder, renamed onto ``target`` (atomic); files and
    folders follow the umask (0664/0775 under 002), not the writers' 0600/0700."""
    from assay.core._io import atomic_dir

    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp))
        if tok is not None:
            tok.save_pretrained(str(tmp))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
