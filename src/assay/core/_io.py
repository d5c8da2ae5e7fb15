"""Atomic file writes and JSON conversion.

Nothing assay records is ever half-written: every file goes to a temporary name in the same
directory and is renamed into place (``os.replace`` is atomic on POSIX and Windows). Given a
``root``, the folder written into is checked first to lie inside it (:mod:`._guard`): a link
planted in a shared root never takes a write outside.

Every file and folder assay writes follows the umask (0644/0755 under the usual 022, 0664/0775
under 002), like log.txt and the store, so a group can share a run root: files are created with
mode 0o666 and folders with 0o777, and the kernel takes the umask off; files and folders other
libraries create with narrower modes (``mkstemp``, weight writers) are widened to the same.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._errors import CheckpointError
from ._guard import StrPath, current_umask, make_dir_in_root, read_json_in_root

# The mode files are created with; the kernel takes the umask off (0644 under the usual 022,
# 0664 under 002). Read at each write, never frozen at import: the umask may change.
FILE_MODE = 0o666
_TMP_COUNTER = itertools.count()


def _folder(path: str, root: StrPath | None) -> str:
    """The folder ``path`` goes into, made if new; resolved and checked when a root is given."""
    head = os.path.dirname(path) or "."
    if root is not None:
        return make_dir_in_root(root, head)
    if not os.path.isdir(head):
        os.makedirs(head, exist_ok=True)
    return head


def _temp_name(folder: str, tail: str, suffix: str = "") -> str:
    """A fresh name beside the target, unique per process and call (created exclusively)."""
    return os.path.join(folder, f".{tail}.{os.getpid()}.{next(_TMP_COUNTER)}.tmp{suffix}")


def follow_umask(path: StrPath) -> None:
    """Give ``path`` (and, for a folder, everything beneath it) the modes the umask asks for:
    0o666 / 0o777 less the umask. For files other libraries wrote with narrower modes."""
    mask = current_umask()
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    top = os.fspath(path)
    if os.path.islink(top):
        return  # a link has no mode of its own; what it points to is not ours to change
    if not os.path.isdir(top):
        os.chmod(top, file_mode)
        return
    os.chmod(top, dir_mode)
    for folder, dirs, files in os.walk(top):
        for name, mode in [*((d, dir_mode) for d in dirs), *((f, file_mode) for f in files)]:
            entry = os.path.join(folder, name)
            if not os.path.islink(entry):
                os.chmod(entry, mode)


@contextlib.contextmanager
def atomic_path(
    path: StrPath, *, fsync: bool = False, root: StrPath | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) and rename it onto ``path`` on success.

    The suffix is kept because some writers append one when it is missing (``numpy.savez``).
    On an exception the temporary file is removed and ``path`` is left untouched. The file
    follows the umask even if the writer replaced it with a narrower one.
    """
    path = os.fspath(path)
    folder = _folder(path, root)
    tail = os.path.basename(path)
    tmp = _temp_name(folder, Path(tail).stem, Path(tail).suffix)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    renamed = False
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        follow_umask(tmp)
        os.replace(tmp, os.path.join(folder, tail))
        renamed = True
    finally:
        if not renamed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: StrPath, *, root: StrPath | None = None) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path`` whole.

    For what other libraries write as a folder (``save_pretrained``): a reader never sees half
    a model, and every file and folder in it follows the umask (weight writers and
    ``tempfile.mkdtemp`` create 0600 / 0700). On an exception the folder is removed.
    """
    path = os.fspath(path)
    folder = _folder(path, root)
    tail = os.path.basename(path)
    tmp = _temp_name(folder, tail)
    os.mkdir(tmp, 0o777)
    try:
        yield Path(tmp)
        follow_umask(tmp)
        final = os.path.join(folder, tail)
        if os.path.islink(final) or os.path.isfile(final):
            os.unlink(final)
        elif os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


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


def atomic_write_text(
    path: StrPath, text: str, *, fsync: bool = False, root: StrPath | None = None
) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place.

    The hot path of every run (config, provenance): one open, one write, one rename. The
    temporary name is unique per process and call, created exclusively, so writers never
    collide. With ``root``, the folder is checked to lie inside it first.
    """
    path = os.fspath(path)
    folder = _folder(path, root) if root is not None else os.path.dirname(path)
    tail = os.path.basename(path)
    tmp = _temp_name(folder, tail)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp, flags, FILE_MODE)
    except FileNotFoundError:  # the folder is new: make it (checked only on failure)
        _folder(path, None)
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
        os.replace(tmp, os.path.join(folder, tail))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(
    path: StrPath,
    obj: Any,
    *,
    fsync: bool = False,
    indent: int | None = 2,
    root: StrPath | None = None,
) -> None:
    """``indent=None`` writes one line with json's C encoder (the indenting one is pure
    Python): for files written once per run that tools, not people, read first."""
    atomic_write_text(path, dumps(obj, indent=indent) + "\n", fsync=fsync, root=root)


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


def read_json(path: StrPath, *, root: StrPath | None = None) -> Any:
    """A JSON file; with ``root``, read only if no link takes it outside the root."""
    if root is not None:
        return read_json_in_root(root, path)
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
