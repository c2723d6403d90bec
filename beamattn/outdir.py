"""Output paths: checked before any computation, written whole or not at all.

Every command that writes results follows the same two steps:

1. :func:`check_out`, before any computation: the output path must be usable (no file where a
   folder is wanted or the reverse, no file among its parents, a writable place to create it) and
   must not already hold results unless ``force`` is given. A problem is one ``ValueError`` line.
2. :class:`StagedDir` (a folder of results) or :class:`StagedFile` (one file): the results are
   assembled in a hidden sibling ``<parent>/.<name>.staging-<pid>-<rand>`` and, once complete,
   replace the target as a whole. When forced, the old folder is first moved aside
   (``.<name>.old-<pid>-<rand>``), the new one moved in, and the old one removed: a reader sees the
   old results or the new ones, never a mix, and never a half-written folder.

A process killed with SIGKILL leaves its staging folder behind; the next staged write into the same
parent removes staging folders whose process (on this host) is gone. SIGTERM is turned into
:class:`Terminated` by :func:`install_sigterm_handler` (the CLI installs it), so the staging
folder is removed on the way out like for any other exception.

Safety of ``force``: a folder is only replaced if it is empty or was written by ``beamattn`` (it holds
the marker file :data:`MARKER`, or only folders that do), and never if it is or contains one of the
command's inputs.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Iterable

from . import __version__

__all__ = ["MARKER", "Terminated", "check_out", "StagedDir", "StagedFile", "remove_stale",
           "install_sigterm_handler"]

MARKER = ".beamattn"  # written into every results folder: what wrote it (JSON)
_OWNER = ".owner.json"  # inside a staging folder: host and pid of the writer
_STAGE_RE = re.compile(r"^\.(?P<name>.+)\.(?P<what>staging|old)-(?P<pid>\d+)-[0-9a-f]+$")


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (see :func:`install_sigterm_handler`).

    A ``BaseException`` like ``KeyboardInterrupt``: ``except Exception`` blocks do not swallow it, and
    ``finally`` blocks and context managers (the staging folders) clean up on the way out.
    """


def install_sigterm_handler():
    """Make SIGTERM raise :class:`Terminated` in the main thread; returns the previous handler (None outside
    the main thread, where nothing is changed), for ``signal.signal(signal.SIGTERM, previous)``."""

    def handler(signum, frame):  # noqa: ARG001 - the signal API
        raise Terminated(f"signal {signum}")

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave the default
        return None


def _label(path: Path, arg: str) -> str:
    return f"'{arg}' = {str(path)!r}"


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        p = p.parent
    return p


def _probe_writable(folder: Path) -> OSError | None:
    """Create and remove a temporary file in ``folder``; the error if that fails (read-only filesystem, permissions).

    ``os.access`` alone is not enough: it answers for the real uid (root passes every permission check)
    and does not see quotas; a real create is what the write phase will do.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".beamattn-probe-")
    except OSError as e:
        return e
    os.close(fd)
    os.unlink(tmp)
    return None


def _is_inside(a: Path, b: Path) -> bool:
    """Is ``a`` equal to ``b`` or inside it (both resolved)?"""
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def _written_by_beamattn(folder: Path) -> bool:
    """A results folder (it holds :data:`MARKER`), or a folder of results folders only (``experiment NAME``
    runs side by side in ``results/experiments``)."""
    if (folder / MARKER).is_file():
        return True
    entries = list(folder.iterdir())
    return bool(entries) and all(e.is_dir() and (e / MARKER).is_file() for e in entries)


def check_out(path: str | os.PathLike, *, kind: str = "dir", force: bool = False, arg: str = "--out",
              inputs: Iterable[str | os.PathLike | None] = (), continue_existing: bool = False,
              hint: str = "pass --force to replace it as a whole") -> Path:
    """Check that results can be written to ``path`` before computing them; return it as a ``Path``.

    Args:
        path: the output folder (``kind="dir"``) or file (``kind="file"``).
        force: an existing results folder or file may be replaced (as a whole, when the results are complete).
        arg: the argument's name, for the error line.
        inputs: files the command reads (scenario, checkpoint): the output may not be one of them, nor
            (a folder) contain one, even with ``force``.
        continue_existing: the command continues what an existing folder holds (``sweep --resume``):
            a non-empty folder is accepted and nothing is replaced.
        hint: what the error line suggests when the folder already holds results.

    Raises:
        ValueError: one line naming the argument, the path and what was expected. Nothing is created.
    """
    if kind not in ("dir", "file"):
        raise ValueError(f"check_out: kind = {kind!r}; expected 'dir' or 'file'")
    if str(path) == "":
        raise ValueError(f"'{arg}' = ''; expected a {'folder' if kind == 'dir' else 'file'} path")
    p = Path(path)
    label = _label(p, arg)
    target = p.resolve()
    if kind == "dir" and _is_inside(Path.cwd().resolve(), target):
        raise ValueError(f"{label} is the current folder or one above it; expected a folder of its own")
    for inp in inputs:
        if inp is None:
            continue
        src = Path(inp).resolve()
        if src == target or (kind == "dir" and _is_inside(src, target)):
            raise ValueError(f"{label} is {'the input' if src == target else 'a folder holding the input'} "
                             f"{str(inp)!r}; expected another path (it would replace what it reads)")
    if os.path.lexists(p):
        if kind == "dir" and not p.is_dir():
            raise ValueError(f"{label} is an existing file; expected a folder (or a path that does not exist)")
        if kind == "file" and p.is_dir():
            raise ValueError(f"{label} is an existing folder; expected a file name")
        if kind == "dir":
            entries = [e.name for e in p.iterdir()]
            if entries and continue_existing:
                pass
            elif entries and not force:
                raise ValueError(f"{label} already holds {len(entries)} entries; {hint}, or choose another folder")
            elif entries and not _written_by_beamattn(p):
                raise ValueError(f"{label} is a non-empty folder that beamattn did not write (no {MARKER} file); "
                                 "it is not replaced even with --force: remove it yourself or choose another folder")
        elif not force:
            raise ValueError(f"{label} already exists; pass --force to replace it, or choose another file name")
    # Staging happens next to the target: its parent (or, when it does not exist yet, the nearest folder
    # above it, where the missing folders will be created) must be a writable folder.
    base = p.parent if os.path.lexists(p) else _nearest_existing(p.parent)
    if not base.is_dir():
        raise ValueError(f"{label} is under {str(base)!r}, which is a file; expected a folder there")
    err = _probe_writable(base)
    if err is not None:
        why = "read-only filesystem" if err.errno == errno.EROFS else (err.strerror or str(err))
        raise ValueError(f"{label}: cannot create files in {str(base)!r} ({why}); expected a writable place")
    return p


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale(parent: Path) -> list[Path]:
    """Remove staging / moved-aside folders in ``parent`` left by processes of this host that are gone.

    A moved-aside old folder whose target is missing (killed between the two renames) is moved back.
    Returns the folders removed or restored.
    """
    done = []
    if not parent.is_dir():
        return done
    host = socket.gethostname()
    for entry in parent.iterdir():
        m = _STAGE_RE.match(entry.name)
        if m is None or not entry.is_dir() or int(m["pid"]) == os.getpid():
            continue
        try:
            owner = json.loads((entry / _OWNER).read_text())
        except (OSError, ValueError):
            owner = {}
        if owner.get("host", host) != host or _pid_alive(int(m["pid"])):
            continue  # another machine's (shared filesystem) or a live process's
        target = parent / m["name"]
        if m["what"] == "old" and not os.path.lexists(target):
            (entry / _OWNER).unlink(missing_ok=True)
            os.replace(entry, target)  # the old results are the last complete ones
        else:
            shutil.rmtree(entry, ignore_errors=True)
        done.append(entry)
    return done


def _sibling(target: Path, what: str) -> Path:
    return target.parent / f".{target.name}.{what}-{os.getpid()}-{secrets.token_hex(4)}"


class StagedDir:
    """``with StagedDir(target, force=..., command="run") as stage:`` write into ``stage``; on success the
    folder replaces ``target`` as a whole; on any exception (SIGTERM and Ctrl-C included) it is removed.

    ``force=False`` refuses (``ValueError``) to replace a non-empty ``target`` found at commit time.
    """

    def __init__(self, target: str | os.PathLike, *, force: bool = False, command: str = ""):
        self.target = Path(target)
        self.force = force
        self.command = command
        self.stage: Path | None = None

    def __enter__(self) -> Path:
        parent = self.target.parent
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale(parent)
        self.stage = _sibling(self.target, "staging")
        self.stage.mkdir()
        (self.stage / _OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        return self.stage

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self.stage is not None
        try:
            if exc_type is None:
                self._commit()
        finally:
            if self.stage.exists():
                shutil.rmtree(self.stage, ignore_errors=True)

    def _commit(self) -> None:
        stage, target = self.stage, self.target
        (stage / _OWNER).unlink()
        (stage / MARKER).write_text(json.dumps({"command": self.command, "beamattn": __version__}) + "\n")
        os.chmod(stage, 0o755)  # like a folder made by mkdir with the usual umask (mkdtemp-like names are private)
        if not os.path.lexists(target):
            os.replace(stage, target)
            return
        if not target.is_dir():
            raise ValueError(f"{str(target)!r} is an existing file; expected a folder")
        if any(target.iterdir()) and not self.force:
            raise ValueError(f"{str(target)!r} already holds results; pass --force to replace it")
        old = _sibling(target, "old")
        os.replace(target, old)
        try:
            os.replace(stage, target)
        except BaseException:
            os.replace(old, target)  # put the old results back
            raise
        shutil.rmtree(old, ignore_errors=True)


class StagedFile:
    """``with StagedFile(target, force=...) as tmp:`` write the file ``tmp`` (in a staging folder beside
    ``target``, same name); on success it replaces ``target`` (``os.replace``: atomic); on any exception
    it is removed. ``force=False`` refuses (``ValueError``) to replace a ``target`` found at commit time."""

    def __init__(self, target: str | os.PathLike, *, force: bool = False):
        self.target = Path(target)
        self.force = force
        self.stage: Path | None = None

    def __enter__(self) -> Path:
        parent = self.target.parent
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale(parent)
        self.stage = _sibling(self.target, "staging")
        self.stage.mkdir()
        (self.stage / _OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        return self.stage / self.target.name

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self.stage is not None
        try:
            if exc_type is None:
                tmp = self.stage / self.target.name
                if not tmp.is_file():
                    raise RuntimeError(f"staged file {tmp} was not written")
                if os.path.lexists(self.target) and not self.force:
                    raise ValueError(f"{str(self.target)!r} already exists; pass --force to replace it")
                if self.target.is_dir():
                    raise ValueError(f"{str(self.target)!r} is an existing folder; expected a file name")
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.target)
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)
