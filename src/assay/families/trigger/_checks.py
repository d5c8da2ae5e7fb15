"""Plan-time check of ``trigger.finetune``: what it asks of its model, before anything runs.

Refused with exit 2 and nothing recorded (see assay.engine._checks): ``model:`` without
``base_maps`` (the selectivity table would be all NaN), a model folder whose tokenizer has no chat
template (the prompts are chat messages), and LoRA ``target_modules`` the model does not have.
Read from cheap metadata only: ``tokenizer_config.json``, ``config.json`` and the safetensors
headers (tensor names and shapes, no weights).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def check_finetune(config: Any) -> None:
    if config.model is not None:
        folder = Path(config.model.path)
        if config.base_maps is None:
            raise ValueError(
                f"model: {str(folder)!r} needs base_maps (category -> quadrant -> colour, the "
                "maps the model had before fine-tuning): without them the old-map columns of the "
                "selectivity table are all NaN; add base_maps, or fine-tune a trigger.base "
                "config with `base:` instead"
            )
        unknown = sorted(set(config.base_maps) - set(config.data.categories))
        if unknown:
            raise ValueError(
                f"base_maps names categories {unknown} that the data config does not have; "
                f"valid: {', '.join(config.data.categories)}"
            )
        if not has_chat_template(folder):
            raise ValueError(
                f"the tokenizer in {folder} has no chat template (no 'chat_template' in "
                f"tokenizer_config.json, no {' or '.join(CHAT_TEMPLATE_FILES)}); the prompts are "
                "chat messages: save the tokenizer with one (tokenizer.chat_template = ...; "
                "tokenizer.save_pretrained(DIR)) or use a chat model"
            )
    if config.method == "lora":
        _check_targets(config)


def has_chat_template(folder: Path) -> bool:
    if any((folder / name).is_file() for name in CHAT_TEMPLATE_FILES):
        return True
    try:
        spec = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(spec.get("chat_template"))


def _check_targets(config: Any) -> None:
    from ._lm import LORA_TARGETS  # torch comes with it: only for LoRA configs

    if config.base is not None:
        arch, where = config.base.arch, f"the trigger.base {config.base.arch} model"
        linear = {*LORA_TARGETS[arch], "lm_head"}  # what a built base model's linears are named
    else:
        folder = Path(config.model.path)
        arch, where = _model_type(folder), f"the {_model_type(folder) or '?'} model at {folder}"
        linear = _matrix_names(folder)
    if config.target_modules is None:
        if arch not in LORA_TARGETS:
            raise ValueError(
                f"no default LoRA target modules for {where} (model type {arch!r}); set "
                f"target_modules to names of its linear layers (defaults are known for "
                f"{', '.join(sorted(LORA_TARGETS))})"
                + (
                    f"; its weight matrices are named {', '.join(sorted(linear))}"
                    if linear
                    else ""
                )
            )
        return
    if not linear:
        return  # no safetensors header to read: the run checks the loaded model
    missing = sorted(set(config.target_modules) - linear)
    if missing:
        raise ValueError(
            f"LoRA target module(s) {missing} are not layers of {where}; valid names: "
            f"{', '.join(sorted(linear))}: fix target_modules (null: the model type's defaults)"
        )


def _model_type(folder: Path) -> str:
    try:
        return str(json.loads((folder / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError):
        return ""


def _matrix_names(folder: Path) -> set[str]:
    """The last name of every module with a 2-D weight, from the safetensors headers."""
    names: set[str] = set()
    for path in sorted(folder.glob("*.safetensors")):
        for key, info in _header(path).items():
            if key.endswith(".weight") and len(info.get("shape", ())) == 2:
                names.add(key[: -len(".weight")].rsplit(".", 1)[-1])
    return names


def _header(path: Path) -> dict[str, Any]:
    """A safetensors file's header: tensor name -> {dtype, shape, data_offsets} (8 + n bytes)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 100_000_000:  # not a safetensors header: nothing to read
            return {}
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return {}
    return {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
