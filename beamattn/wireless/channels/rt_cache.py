"""A content-addressed, checksummed disk cache for ray-tracing results.

A ray-tracing solve takes seconds to minutes; its result only depends on the scene's files, the receiver
positions and velocities, the solver settings, the arrays and the frequency. :func:`cache_key` hashes all of
them (a canonical JSON of the settings plus the raw bytes of the position arrays) into a SHA-256 key, and
:class:`TraceCache` stores one ``.npz`` per key (``allow_pickle=False`` on reading: the cache never unpickles
code) with the SHA-256 of the payload beside it in ``<key>.sha256``. A payload whose digest does not match
(a truncated or altered file), or one that cannot be read, is reported by one warning line and treated as a
miss, so the caller recomputes and overwrites it. Writes are atomic (:mod:`beamattn.io`).

Location: ``$BEAMATTN_RT_CACHE`` when set, else ``$XDG_CACHE_HOME/beamattn/rt`` (``~/.cache/beamattn/rt``).
Delete the folder to empty the cache; entries are a few hundred kB each.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...io import write_file_atomic, write_text_atomic

__all__ = ["CACHE_ENV", "TraceCache", "CorruptCacheWarning", "cache_key", "default_cache_dir", "files_digest"]

CACHE_ENV = "BEAMATTN_RT_CACHE"
_FORMAT = 1  # bump when the payload layout changes: old entries then simply miss


class CorruptCacheWarning(RuntimeWarning):
    """A cache entry failed its checksum or could not be read; it is recomputed."""


def default_cache_dir() -> Path:
    """``$BEAMATTN_RT_CACHE``, else ``$XDG_CACHE_HOME/beamattn/rt`` (default ``~/.cache/beamattn/rt``)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "beamattn" / "rt"


_DIGESTS: dict[tuple, str] = {}  # (files, sizes, mtimes) -> digest: a scene is hashed once per process


def files_digest(paths: list[Path]) -> str:
    """SHA-256 over the relative names and bytes of ``paths`` (a scene's XML and its meshes)."""
    paths = sorted(Path(p) for p in paths)
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    if stamp not in _DIGESTS:
        h = hashlib.sha256()
        root = paths[0].parent if paths else Path(".")
        for p in paths:
            h.update(os.path.relpath(p, root).encode() + b"\0")
            h.update(p.read_bytes())
        _DIGESTS[stamp] = h.hexdigest()
    return _DIGESTS[stamp]


def cache_key(settings: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> str:
    """SHA-256 hex key of ``settings`` (JSON-able) and the dtype, shape and bytes of ``arrays``."""
    h = hashlib.sha256(json.dumps({"format": _FORMAT, **settings}, sort_keys=True).encode())
    for name in sorted(arrays or {}):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class TraceCache:
    """``get(key)`` / ``put(key, arrays)`` of dicts of NumPy arrays under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = default_cache_dir() if root is None else Path(root)

    def paths(self, key: str) -> tuple[Path, Path]:
        """The payload and checksum files of ``key`` (two-level fan-out keeps folders small)."""
        folder = self.root / key[:2]
        return folder / f"{key}.npz", folder / f"{key}.sha256"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None on a miss; a corrupt entry warns once and misses."""
        payload, digest = self.paths(key)
        if not payload.is_file():
            return None
        data = payload.read_bytes()
        want = digest.read_text().strip() if digest.is_file() else ""
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            warnings.warn(f"beamattn: ray-tracing cache entry {payload} is corrupt (sha256 {got[:12]}... != stored "
                          f"{want[:12] or 'none'}...); recomputing it", CorruptCacheWarning, stacklevel=2)
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return {name: z[name] for name in z.files}
        except (ValueError, OSError, EOFError) as e:  # checksummed but unreadable (e.g. written by another format)
            warnings.warn(f"beamattn: ray-tracing cache entry {payload} cannot be read ({e}); recomputing it",
                          CorruptCacheWarning, stacklevel=2)
            return None

    def put(self, key: str, arrays: Mapping[str, np.ndarray]) -> Path:
        """Store ``arrays`` under ``key`` (payload first, then its checksum: a crash in between is a miss)."""
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        data = buf.getvalue()
        payload, digest = self.paths(key)
        write_file_atomic(payload, lambda tmp: Path(tmp).write_bytes(data))
        write_text_atomic(digest, hashlib.sha256(data).hexdigest() + "\n")
        return payload
