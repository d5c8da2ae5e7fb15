"""One guard for every open inside a run root: no symbolic link takes a read or a write outside it.

A root may be shared by a group (files follow the umask for that reason), so anyone who can write
to it can plant a link: ``log.txt -> ~/.bashrc``, ``artifacts -> /elsewhere``, or a run folder
that is itself a link. Every path assay opens under a root goes through here:

- the folder a file is in is resolved (every link followed) and must lie inside the root,
  resolved too (a root that is itself a link is fine);
- the file is opened with ``O_NOFOLLOW``: a link in its place is followed only when its target
  lies inside the root, and is then opened by its resolved name (``O_NOFOLLOW`` again).

Writes that rename into place (:func:`~._io.atomic_write_text`) replace a link instead of
writing through it, so for them only the folder is checked. The guard checks, then opens: a
folder swapped for a link in between by someone racing the check is not covered; a file swapped
for a link always is.
"""

from __future__ import annotations

import errno
import functools
import json
import os
from typing import Any

from ._errors import AssayError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # every POSIX system has it; Windows has no such links
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
StrPath = str | os.PathLike[str]


class OutsideRootError(AssayError):
    """A path inside a run root leads outside it through a symbolic link; nothing was opened."""


def _within(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=64)
def _root_real(root: str) -> str:
    """A root's resolved path: the trust anchor, resolved once per process (a run resolves
    paths under it a dozen times; what lies beneath is resolved every time)."""
    return os.path.realpath(root)


def real_in_root(root: StrPath, path: StrPath, *, verb: str = "open") -> str:
    """``path`` with every link resolved, if that lies inside ``root``; else OutsideRootError.

    ``path`` need not exist (a folder about to be made): its existing part is resolved.
    """
    root_real = _root_real(os.fspath(root))
    real = os.path.realpath(path)
    if not _within(real, root_real):
        raise OutsideRootError(_message(root, path, real, verb))
    return real


def _message(root: StrPath, path: StrPath, real: str, verb: str) -> str:
    root_abs = os.path.abspath(root)
    probe = os.path.abspath(path)
    while _within(probe, root_abs) and probe != root_abs:  # the first link on the way down
        if os.path.islink(probe):
            return (
                f"refusing to {verb} {os.fspath(path)}: {probe} is a symbolic link to "
                f"{os.readlink(probe)}, outside the run root {root_abs}; assay never reads or "
                f"writes outside its root. Remove the link (rm {probe}) and run again"
            )
        probe = os.path.dirname(probe)
    return (
        f"refusing to {verb} {os.fspath(path)}: it resolves to {real}, outside the run root "
        f"{root_abs}; assay never reads or writes outside its root. Remove the symbolic link "
        "that leads there and run again"
    )


def open_in_root(
    root: StrPath, path: StrPath, flags: int = os.O_RDONLY, *, folder_checked: bool = False
) -> int:
    """``os.open`` of a file under ``root`` that never follows a link leading outside it.

    Created files get mode 0o666 less the umask. ``folder_checked=True`` skips resolving the
    folder (the caller resolved it with :func:`real_in_root` and passes the resolved path):
    the hot path of a run's appends.
    """
    path = os.fspath(path)
    verb = "write" if flags & (os.O_WRONLY | os.O_RDWR) else "read"
    if not folder_checked:
        head, tail = os.path.split(path)
        path = os.path.join(real_in_root(root, head or ".", verb=verb), tail)
    try:
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EMLINK):  # a link in the file's place
            raise
    return os.open(real_in_root(root, path, verb=verb), flags | _NOFOLLOW | _CLOEXEC, 0o666)


def read_bytes_in_root(root: StrPath, path: StrPath) -> bytes:
    with os.fdopen(open_in_root(root, path), "rb") as f:
        return f.read()


def read_text_in_root(root: StrPath, path: StrPath) -> str:
    return read_bytes_in_root(root, path).decode("utf-8")


def read_json_in_root(root: StrPath, path: StrPath) -> Any:
    return json.loads(read_bytes_in_root(root, path))


def append_text_in_root(
    root: StrPath, path: StrPath, text: str, *, folder_checked: bool = False
) -> None:
    """Append ``text`` (log lines, metric lines) to a file under ``root``, creating it."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    fd = open_in_root(root, path, flags, folder_checked=folder_checked)
    try:
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def make_dir_in_root(root: StrPath, path: StrPath) -> str:
    """Make the folder ``path`` (and its parents) under ``root``; return its resolved path.

    Refused, before anything is made, when a link on the way leads outside the root.
    """
    real = real_in_root(root, path, verb="write into")
    if not os.path.isdir(real):  # one stat, not a failing mkdir, for the usual existing folder
        os.makedirs(real, exist_ok=True)
    return real


def check_tree_in_root(root: StrPath, path: StrPath, *, verb: str = "read") -> str:
    """``path`` resolved inside ``root`` and, for a folder, every link beneath it too (an upstream
    run's model folder is read file by file by other libraries). Returns the resolved path."""
    real = real_in_root(root, path, verb=verb)
    if os.path.isdir(real):
        for folder, dirs, files in os.walk(real):
            for name in [*dirs, *files]:
                entry = os.path.join(folder, name)
                if os.path.islink(entry):
                    real_in_root(root, entry, verb=verb)
    return real


def current_umask() -> int:
    """The process's umask, read without changing it (Linux: /proc), else set and put back."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask
