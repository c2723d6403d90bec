"""Atomic writes: a result file is either complete or absent, never half-written."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["write_file_atomic", "write_json_atomic", "write_text_atomic", "save_figure_atomic"]

_FILE_MODE = 0o644


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, strict JSON (RFC 8259), atomically.

    NaN and ±Infinity are not JSON (Python's ``json`` would write bare ``NaN``, which strict parsers
    reject): a value that can be undefined must be written as ``None`` (``null``) by its producer.
    A non-finite float is refused with one line naming the file and where in ``obj`` it is.
    """
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        where = _non_finite(obj)
        if where is None:
            raise
        raise ValueError(f"{path}: value {where[0]} = {float(where[1])!r} cannot be written as strict JSON; expected a "
                         "finite number, or None (null) for an undefined value") from None
    return write_text_atomic(path, text + "\n")


def _non_finite(obj: Any, where: str = "") -> tuple[str, float] | None:
    """``(key path, value)`` of the first non-finite float in a JSON-like ``obj``, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "(top level)", obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}[{key!r}]")
        if found is not None:
            return found
    return None


def write_file_atomic(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> Path:
    """Atomically create ``path`` with ``write(tmp_name)``, a writer that takes a file name (safetensors'
    ``save_file``, ``np.savez``, ``fig.savefig``): a temporary file in the same folder, then ``os.replace``.

    ``suffix``: the temporary file's suffix, for writers that choose the format by it (or append one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure_atomic(fig, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a Matplotlib figure atomically (same folder temp file, then rename)."""
    options = {"dpi": 130, "bbox_inches": "tight", **kwargs}
    return write_file_atomic(path, lambda tmp: fig.savefig(tmp, **options), suffix=Path(path).suffix)
