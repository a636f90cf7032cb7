"""Who has a project open: one running Crystal Studio window at a time holds a project's session.

SQLite lets several processes read and write one project safely (the command line beside the GUI is
fine), but two windows editing one project step on each other's work (renames, deletes, flags). So a
window claims the project's session before it shows it: an exclusive OS lock (``flock``; ``msvcrt``
on Windows) on the file ``NAME.lock`` beside the project, holding a note of who claimed it. The OS
drops the lock when its process ends however it ends (even SIGKILL or a power cut), so a session is
never left claimed by a dead process. A second window that finds the session taken is told by whom
(:class:`ProjectInUseError`) and opens the project read-only.

A folder that cannot hold the lock file (read-only) claims nothing: the project is read-only there
anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import datetime
from pathlib import Path

from crystal_studio.core.errors import ProjectError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


class ProjectInUseError(ProjectError):
    """Another running Crystal Studio holds the project's session; ``holder`` says which (pid, host,
    since) as far as its note can be read, ``reason`` is a short phrase for a read-only title."""

    def __init__(self, path: Path, holder: dict):
        who = _describe(holder)
        super().__init__(f"{path}: the project is already open in another Crystal Studio ({who}); open it "
                         "read-only here, or close it there first")
        self.holder = holder
        self.reason = f"already open in another Crystal Studio, {who}"


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "a process whose note cannot be read"
    since = f", since {holder['since']}" if holder.get("since") else ""
    return f"process {holder['pid']} on {holder.get('host', '?')}{since}"


def lock_path(project_path: Path) -> Path:
    """The lock file of the project at ``project_path``."""
    return Path(project_path).with_name(Path(project_path).name + ".lock")


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def _read_note(path: Path) -> dict:
    try:
        note = json.loads(path.read_text(encoding="utf-8") or "{}")
        return note if isinstance(note, dict) else {}
    except (OSError, ValueError):
        return {}


class ProjectSession:
    """The claimed session of one project (see the module docstring); :meth:`release` ends it."""

    def __init__(self, project_path: Path, fd: int | None):
        self.project_path = Path(project_path)
        self.path = lock_path(project_path)
        self._fd = fd

    @property
    def held(self) -> bool:
        """Whether this session holds the lock (False where the folder could not hold one)."""
        return self._fd is not None

    def release(self) -> None:
        """End the session: the lock file is removed and unlocked (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked, so nobody locks a file about to vanish
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> ProjectSession:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_session(project_path: str | Path) -> ProjectSession:
    """Claim the session of the project at ``project_path`` for this process; :class:`ProjectInUseError`
    naming the holder when another process has it. Where no lock file can be made (a read-only folder)
    the session returned holds nothing."""
    project_path = Path(project_path)
    path = lock_path(project_path)
    for _ in range(5):  # the lock file may be removed (released) between opening and locking it
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return ProjectSession(project_path, None)
        if not _try_lock(fd):
            os.close(fd)
            raise ProjectInUseError(project_path, _read_note(path))
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if not same:  # locked a file its holder removed on release: try the new one
            os.close(fd)
            continue
        note = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.now().astimezone().isoformat(timespec="seconds")}
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(note).encode("utf-8"))
        return ProjectSession(project_path, fd)
    return ProjectSession(project_path, None)


def session_holder(project_path: str | Path) -> dict | None:
    """Who holds the session of the project (its note), None when nobody does."""
    try:
        session = claim_session(project_path)
    except ProjectInUseError as exc:
        return exc.holder
    session.release()
    return None
