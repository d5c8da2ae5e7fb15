"""Clean and corrupted inputs, paired by id.

Either one *pairs* file or two files (clean, corrupted). Formats:

- ``.json``: a list of records ``{"id": ..., "input"|"obs"|"tokens"|"text": ...}`` or a mapping
  ``{id: input}``; a pairs file has records with ``"clean"`` and ``"corrupted"`` (or top-level
  ``{"clean": [...], "corrupted": [...]}``).
- ``.jsonl``: one such record per line (the usual form for token ids or texts).
- ``.npy``: an array (N, ...); ids are the row numbers.
- ``.npz`` / ``.pt``: arrays ``inputs`` (or ``clean`` and ``corrupted``) and optional ``ids``.

Texts need the model's tokenizer. Patching compares activations position by position, so a
pair's clean and corrupted sequences must have the same length; different pairs may differ:
they are right-padded to the longest and run with an attention mask (models that take one:
Hugging Face models), each read at its own readout position.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from assay.ml.patching import InputPairs, LoadedModel

from ._errors import PatchingError

VALUE_KEYS = ("input", "obs", "observation", "tokens", "input_ids", "text", "x")
SUFFIXES = (".json", ".jsonl", ".npy", ".npz", ".pt")


def _value(rec: dict, where: str) -> Any:
    for key in VALUE_KEYS:
        if key in rec:
            return rec[key]
    raise PatchingError(f"{where}: record has none of the keys {VALUE_KEYS}; got {sorted(rec)}")


def _records(obj: Any, where: str) -> dict[str, Any]:
    """id -> raw input, from a list of records or an {id: input} mapping."""
    if isinstance(obj, dict):
        return {str(k): v for k, v in obj.items()}
    if not isinstance(obj, list):
        raise PatchingError(
            f"{where}: expected a list of records or an id mapping, got {type(obj).__name__}"
        )
    out: dict[str, Any] = {}
    for i, rec in enumerate(obj):
        if isinstance(rec, dict):
            key, value = str(rec.get("id", i)), _value(rec, f"{where} record {i}")
        else:
            key, value = str(i), rec
        if key in out:
            raise PatchingError(f"{where}: id {key!r} appears more than once; ids must be unique")
        out[key] = value
    return out


def _read(path: Path) -> Any:
    """The raw content: a parsed JSON object, a list of records or a dict of arrays."""
    if not path.is_file():
        raise PatchingError(f"input file {str(path)!r} does not exist")
    try:
        return _parse(path, path.suffix.lower())
    except pickle.UnpicklingError:
        raise PatchingError(
            f"refusing to load input file {str(path)!r}: it holds objects other than tensors, "
            "and loading them would run code from the file; save plain tensors or arrays"
        ) from None
    except (OSError, EOFError, ValueError, RuntimeError, zipfile.BadZipFile) as exc:
        # JSON and text errors are ValueErrors; numpy refuses object arrays with one too
        why = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise PatchingError(
            f"input file {str(path)!r} is not a readable {path.suffix} file ({why}); valid "
            f"formats: {', '.join(SUFFIXES)} (see the patching README, Inputs)"
        ) from None


def _parse(path: Path, suffix: str) -> Any:
    if suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    if suffix == ".jsonl":
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return [json.loads(ln) for ln in lines]
    if suffix == ".npy":
        return {"inputs": np.load(path, allow_pickle=False)}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    if suffix == ".pt":
        with warnings.catch_warnings():  # torch's note on the protocol of a refused pickle
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, torch.Tensor):
            return {"inputs": obj}
        if not isinstance(obj, dict):
            raise ValueError(f"it holds a {type(obj).__name__}, not a tensor or a dict of them")
        return obj
    raise PatchingError(
        f"input file {path.name!r}: unknown format; valid suffixes: {', '.join(SUFFIXES)}"
    )


def _arrays_to_records(arrays: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    data = arrays[key]
    raw = arrays.get("ids")
    if raw is None:
        raw = range(len(data))  # no ids: row numbers
    elif hasattr(raw, "tolist"):
        raw = raw.tolist()  # numpy array or tensor of ids
    ids = [str(i) for i in raw]
    if len(ids) != len(data):
        raise PatchingError(f"{where}: {len(ids)} ids for {len(data)} rows of {key!r}")
    return _records([{"id": i, "input": d} for i, d in zip(ids, data, strict=True)], where)


def _one_side(path: Path) -> dict[str, Any]:
    raw = _read(path)
    if isinstance(raw, dict) and any(
        isinstance(v, (np.ndarray, torch.Tensor)) for v in raw.values()
    ):
        keys = [k for k in ("inputs", "input", "obs", "x", "tokens") if k in raw]
        if not keys:
            arrays = [k for k in raw if k != "ids"]
            if len(arrays) != 1:
                raise PatchingError(f"{path}: name the input array 'inputs' (found {sorted(raw)})")
            keys = arrays
        return _arrays_to_records(raw, keys[0], str(path))
    return _records(raw, str(path))


def _pairs_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = _read(path)
    where = str(path)
    if isinstance(raw, dict) and "clean" in raw and "corrupted" in raw:
        if isinstance(raw["clean"], (np.ndarray, torch.Tensor)):
            return (
                _arrays_to_records(raw, "clean", where),
                _arrays_to_records(raw, "corrupted", where),
            )
        return _records(raw["clean"], where + " clean"), _records(
            raw["corrupted"], where + " corrupted"
        )
    if isinstance(raw, list) and raw and all(isinstance(r, dict) and "clean" in r for r in raw):
        clean, corrupted = {}, {}
        for i, rec in enumerate(raw):
            if "corrupted" not in rec:
                raise PatchingError(f"{where} record {i}: has 'clean' but no 'corrupted'")
            key = str(rec.get("id", i))
            if key in clean:
                raise PatchingError(
                    f"{where}: id {key!r} appears more than once; ids must be unique"
                )
            clean[key], corrupted[key] = rec["clean"], rec["corrupted"]
        return clean, corrupted
    raise PatchingError(
        f"{where}: a single inputs file must hold pairs ('clean' and 'corrupted' arrays, or records "
        "with both keys); otherwise pass two files: --inputs CLEAN CORRUPTED"
    )


def _lengths(values: list[Any], model: LoadedModel) -> list[int]:
    """Token sequences' lengths (texts tokenized) of a token model's inputs."""
    if model.tokenizer is None and any(isinstance(v, str) for v in values):
        raise PatchingError(
            f"inputs are texts but {model.description} has no tokenizer; "
            "save one in the model directory or pass token ids"
        )
    return [
        len(model.tokenizer(v)["input_ids"]) if isinstance(v, str) and model.tokenizer else len(v)
        for v in values
    ]


def _to_tensor(values: list[Any], ids: list[str], model: LoadedModel, side: str) -> torch.Tensor:
    if model.input_kind == "tokens":
        if any(isinstance(v, str) for v in values):
            if model.tokenizer is None:
                raise PatchingError(
                    f"{side} inputs are texts but {model.description} has no tokenizer; "
                    "save one in the model directory or pass token ids"
                )
            values = [model.tokenizer(v)["input_ids"] if isinstance(v, str) else v for v in values]
        lengths = [len(v) for v in values]
        if len(set(lengths)) > 1:
            if not model.accepts_lengths:
                first = next(i for i, n in zip(ids, lengths, strict=True) if n != lengths[0])
                raise PatchingError(
                    f"{side} token sequences differ in length ({sorted(set(lengths))}; e.g. id "
                    f"{first!r}) and {model.description} takes no attention mask; pad or trim "
                    "every sequence to one length"
                )
            pad = model.pad_token_id if model.pad_token_id is not None else 0
            longest = max(lengths)
            values = [list(v) + [pad] * (longest - len(v)) for v in values]  # right padding
        out = torch.as_tensor(np.asarray(values), dtype=torch.long)  # (N, T)
        if model.vocab_size is not None and out.numel() and int(out.max()) >= model.vocab_size:
            raise PatchingError(
                f"{side} token id {int(out.max())} >= vocab size {model.vocab_size}"
            )
        return out
    try:
        out = torch.as_tensor(np.stack([np.asarray(v, dtype=np.float32) for v in values]))
    except ValueError:
        shapes = {np.asarray(v).shape for v in values}
        raise PatchingError(
            f"{side} inputs have different shapes {sorted(shapes)}; all must match"
        ) from None
    if model.input_shape is not None and tuple(out.shape[1:]) != tuple(model.input_shape):
        raise PatchingError(
            f"{side} inputs have shape {tuple(out.shape[1:])} per sample but {model.description} "
            f"expects {tuple(model.input_shape)}"
        )
    return out


def load_pairs(paths: Sequence[str | Path], model: LoadedModel) -> InputPairs:
    """Read one pairs file or (clean, corrupted) files and pair them by id."""
    files = [Path(p) for p in paths]
    if len(files) == 1:
        clean, corrupted = _pairs_file(files[0])
    elif len(files) == 2:
        clean, corrupted = _one_side(files[0]), _one_side(files[1])
    else:
        raise PatchingError(
            f"--inputs takes 1 (pairs) or 2 (clean, corrupted) files, got {len(files)}"
        )
    only_clean = [k for k in clean if k not in corrupted]
    only_corrupted = [k for k in corrupted if k not in clean]
    if only_clean or only_corrupted:
        raise PatchingError(
            f"inputs are paired by id, but {len(only_clean)} clean id(s) have no corrupted partner "
            f"(e.g. {only_clean[:5]}) and {len(only_corrupted)} corrupted id(s) have no clean "
            f"partner (e.g. {only_corrupted[:5]}); give both files the same ids"
        )
    if not clean:
        raise PatchingError("the inputs are empty; need at least one clean/corrupted pair")
    ids = list(clean)
    lengths = None
    if model.input_kind == "tokens":
        n_clean = _lengths([clean[i] for i in ids], model)
        n_corr = _lengths([corrupted[i] for i in ids], model)
        odd = [i for i, a, b in zip(ids, n_clean, n_corr, strict=True) if a != b]
        if odd:
            raise PatchingError(
                f"{len(odd)} pair(s) have clean and corrupted sequences of different lengths "
                f"(e.g. id {odd[0]!r}); patching compares positions, so each pair's two "
                "sequences must have one length (pairs may differ from each other)"
            )
        if len(set(n_clean)) > 1:
            lengths = torch.tensor(n_clean)
    c = _to_tensor([clean[i] for i in ids], ids, model, "clean")
    x = _to_tensor([corrupted[i] for i in ids], ids, model, "corrupted")
    if c.shape != x.shape:
        raise PatchingError(
            f"clean inputs have shape {tuple(c.shape[1:])} but corrupted {tuple(x.shape[1:])}; "
            "each pair must have the same shape (same sequence length for tokens)"
        )
    pairs = InputPairs(ids=ids, clean=c, corrupted=x, lengths=lengths)
    pairs.check()  # NaN / inf inputs are refused by id
    return pairs
