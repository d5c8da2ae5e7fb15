"""Content-addressed file and model references: a path plus the sha256 of what is there.

A config that names a file by path alone caches a stale run when the file changes under the same
name. A :class:`FileRef` field carries the content hash too, filled in from the file when the
config is built, so it is part of the run id; the stage calls ``ref.verify()`` before reading.

    class Config(TorchConfig):
        data: FileRef            # a suite may write just `data: pairs.npz`
        model: ModelRef          # a model directory: config, tokenizer and weight files

    config.model.verify()        # ContentChangedError if the folder changed since
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pydantic

from ..core._config import suite_path
from ._errors import ContentChangedError, ModelNotFoundError

_CACHE: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha256
_BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (cached per process by path, size and mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(_BLOCK), b""):
                h.update(block)
        _CACHE[key] = h.hexdigest()
    return _CACHE[key]


def _hashed_files(root: Path) -> list[Path]:
    """Regular files under ``root`` except hidden ones (.git, .cache) and Markdown docs."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or p.suffix.lower() == ".md":
            continue
        if p.is_file():
            out.append(p)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def sha256_dir(path: str | os.PathLike[str]) -> str:
    """sha256 over a directory's files: sorted relative names and their sha256s.

    Hidden files and folders (``.git``, ``.cache``) and ``*.md`` are left out: a model card or
    a VCS folder does not change what a model computes; config, tokenizer and weights do.
    """
    root = Path(path)
    h = hashlib.sha256()
    for f in _hashed_files(root):
        h.update(f"{f.relative_to(root).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def sha256_path(path: str | os.PathLike[str]) -> str:
    """:func:`sha256_dir` for a directory, :func:`sha256_file` for a file."""
    return sha256_dir(path) if Path(path).is_dir() else sha256_file(path)


class FileRef(pydantic.BaseModel):
    """A file or folder path and the sha256 of its content; both enter the run id.

    Given a plain path (``"data/pairs.npz"``) the hash is computed when the config is built.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    path: str = pydantic.Field(description="the file or folder")
    sha256: str = pydantic.Field(
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of its content (computed when a plain path is given)",
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_path(cls, data: Any, info: pydantic.ValidationInfo) -> Any:
        if isinstance(data, os.PathLike | str):
            data = {"path": os.fspath(data)}
        if isinstance(data, dict) and "sha256" not in data and "path" in data:
            # in a suite, a relative path is the suite file's neighbour (wherever assay runs)
            path = suite_path(data["path"], info)
            cls._check_exists(path)
            data = {**data, "path": path, "sha256": sha256_path(path)}
        return data

    @classmethod
    def _check_exists(cls, path: str) -> None:
        if not os.path.exists(path):
            raise ValueError(f"{path!r} does not exist (cwd {os.getcwd()}); fix the path")

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileRef:
        """A reference to what is at ``path`` now."""
        return cls.model_validate(os.fspath(path))

    @property
    def local(self) -> Path:
        """The path as a :class:`~pathlib.Path`."""
        return Path(self.path)

    def verify(self) -> Path:
        """The path, after checking its content still has ``sha256``; else ContentChangedError."""
        if not os.path.exists(self.path):
            raise ContentChangedError(
                f"{self.path} is gone (expected sha256 {self.sha256}); restore it, or build "
                "the config again from the new path"
            )
        actual = sha256_path(self.path)
        if actual != self.sha256:
            raise ContentChangedError(
                f"{self.path} changed after this run was configured: expected sha256 "
                f"{self.sha256}, found {actual}. Build the config again (rerun the suite or "
                "command) so the new content gets its own run id, or restore the old content"
            )
        return Path(self.path)


class ModelRef(FileRef):
    """A local model directory (``config.json`` plus tokenizer and weight files) and its hash."""

    @classmethod
    def _check_exists(cls, path: str) -> None:
        if not os.path.isdir(path):
            raise ValueError(
                f"no model directory at {path!r} (cwd {os.getcwd()}); assay loads models from "
                "local folders only: save one with model.save_pretrained(DIR) (and "
                "tokenizer.save_pretrained(DIR)), or download it elsewhere and pass the folder"
            )

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> ModelRef:
        """A reference to the model directory at ``path`` now."""
        if not os.path.isdir(path):
            raise ModelNotFoundError(
                f"no model directory at {os.fspath(path)!r}; assay loads models from local "
                "folders only"
            )
        return cls.model_validate(os.fspath(path))
