"""Who holds a claim: an owner string precise enough to tell a reused pid, and whether that
owner is still alive (the store's claim and an executor's reaping of a dead worker ask it)."""

from __future__ import annotations

import os
import socket
import uuid


def _proc_start(pid: int) -> str:
    """The process's start time in clock ticks (Linux), so a reused pid is not mistaken."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_owner() -> str:
    """``host:pid:start:token``: who holds a claim, precise enough to tell a reused pid."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start(pid)}:{uuid.uuid4().hex[:8]}"


def liveness(owner: str) -> bool | None:
    """True: a live process on this host (even stopped); False: known dead; None: elsewhere."""
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None
    pid = int(parts[1])
    if not _alive(pid):
        return False
    start = parts[2] if len(parts) >= 4 else ""
    return not (start and _proc_start(pid) not in ("", start))  # a different process: pid reused
