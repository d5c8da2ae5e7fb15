"""Atomic file writes and JSON conversion.

Nothing assay records is ever half-written: every file goes to a temporary name in the same
directory and is renamed into place (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._errors import CheckpointError


def _read_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


# mkstemp creates files 0600; every file assay writes follows the umask instead (0644 under the
# usual 022, 0664 under 002), like log.txt and the store, so a group can share a run root.
FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) and rename it onto ``path`` on success.

    The suffix is kept because some writers append one when it is missing (``numpy.savez``).
    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
    except FileNotFoundError:  # the folder is new: make it (checked only on failure: fast path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp = Path(tmp_name)
    renamed = False
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        renamed = True
    finally:
        if not renamed:
            tmp.unlink(missing_ok=True)


def agg_pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first call)."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (same suffix, so the format is kept) and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return Path(path)


_TMP_COUNTER = itertools.count()


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = False) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place.

    The hot path of every run (config, provenance): one open, one write, one rename. The
    temporary name is unique per process and call, created exclusively, so writers never
    collide.
    """
    path = os.fspath(path)
    head, tail = os.path.split(path)
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.{next(_TMP_COUNTER)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp, flags, FILE_MODE)
    except FileNotFoundError:  # the folder is new: make it (checked only on failure)
        os.makedirs(head, exist_ok=True)
        fd = os.open(tmp, flags, FILE_MODE)
    try:
        try:
            data = memoryview(text.encode("utf-8"))
            while data:  # a regular file takes it in one write; loop in case it does not
                data = data[os.write(fd, data) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(
    path: str | os.PathLike[str], obj: Any, *, fsync: bool = False, indent: int | None = 2
) -> None:
    """``indent=None`` writes one line with json's C encoder (the indenting one is pure
    Python): for files written once per run that tools, not people, read first."""
    atomic_write_text(path, dumps(obj, indent=indent) + "\n", fsync=fsync)


def load_torch_file(path: str | os.PathLike[str], *, trusted: bool, fix: str) -> Any:
    """``torch.load`` of a file assay did not necessarily write: plain state only.

    ``weights_only=True`` unless ``trusted`` (the user's explicit flag: ``trusted=True`` from a
    stage, ``--trust-checkpoint`` on the command line); a file holding pickled objects is then
    refused with :class:`CheckpointError`, whose message ends with ``fix``. This is the one place
    assay unpickles, and only behind that flag.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors, containers, numbers "
            f"and strings ({str(exc).splitlines()[0][:200]}); loading it would run code from "
            f"the file. {fix}"
        ) from None


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays, paths, tuples and pydantic models to JSON types.

    Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"``; JSON has no
    literal for them and :func:`from_jsonable_float` reads them back.
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else _NONFINITE[str(obj)]
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "model_dump"):  # pydantic model
        return to_jsonable(obj.model_dump(mode="json"))
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return to_jsonable(obj.item())
    raise TypeError(
        f"cannot store a {type(obj).__name__} as JSON ({obj!r:.80}); "
        "return numbers, strings, lists or dicts, and save other objects as artifacts"
    )


_NONFINITE = {"nan": "nan", "inf": "inf", "-inf": "-inf"}


def dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(to_jsonable(obj), allow_nan=False, **kwargs)


def canonical_json(obj: Any) -> str:
    """The one serialisation that run ids are hashed from: sorted keys, no whitespace."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
