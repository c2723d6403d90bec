"""The file a Keras selector loads: one ``.safetensors`` file of NumPy arrays (no torch, no TensorFlow).

``beamattn export --format keras CHECKPOINT --out FILE`` writes it (torch side,
:mod:`beamattn.wireless.keras_export`); :meth:`beamattn.keras.AttentionSelectorLayer.from_file`
reads it. Only NumPy and ``safetensors`` are needed to read or write it, so both sides share
this module. Tensors (float32 unless noted):

==================  ==================  =====================================================
name                shape               meaning
==================  ==================  =====================================================
``codebook_real``   ``[M, N]``          real part of the codebook beams (Set A, unit norm)
``codebook_imag``   ``[M, N]``          imaginary part
``measured``        ``[M]`` uint8       1 for the beams of Set B (the measured ones)
``key_conv_weight`` ``[d, L+1, 2n+1]``  learned only: the key convolution (torch Conv1d layout:
                                        out channels, in channels, width); with a ``grid``,
                    ``[d, L+1, kv, kh]`` the 2-D one (torch Conv2d layout), ``kv = 2 n_v + 1``,
                                        ``kh = 2 n_h + 1`` (``n_v = min(n, (M_v-1)//2)``, same for h)
``key_conv_bias``   ``[d]``             learned only
``query``           ``[d]``             learned only: the query vector
``beam_bias``       ``[M]``             learned only: the per-beam score bias
==================  ==================  =====================================================

Metadata (strings): ``format`` = ``"beamattn-keras-selector"``, ``format_version`` = ``"1"``,
``selector`` (the selector config as JSON: normalizer, mode, topk, temperature, history ``L``,
neighbours ``n``, d_model ``d``, cophase, learned and, for a UPA grid of beams only, grid
``[M_v, M_h]`` — absent means 1-D keys), ``num_beams`` (``M``), ``num_ant`` (``N``),
``set_b`` (JSON list of the measured beam indices), ``beamattn_version`` and ``source``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import write_file_atomic

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SelectorFile", "SelectorFileError", "check_selector_config",
           "check_grid", "kernel_radii", "read_selector_file", "write_selector_file"]

FORMAT_NAME = "beamattn-keras-selector"
FORMAT_VERSION = 1
_CHECKPOINT_KEY = "beamattn_config"  # metadata key of a torch checkpoint (beamattn.wireless.checkpoint)

# The fields of beamattn.wireless.selector.SelectorConfig (kept in step by tests/test_keras_export.py).
_CONFIG_FIELDS = ("normalizer", "mode", "topk", "temperature", "history", "neighbours", "d_model", "cophase",
                  "learned", "grid", "arch", "layers", "heads", "query", "phase_predict", "phase_lead")
# Absent = None for grid (files written before the field existed, and every 1-D selector); absent = "conv" for
# arch and its fields (the only architecture the Keras layer implements: a file that names another is refused).
_OPTIONAL_FIELDS = ("grid", "arch", "layers", "heads", "query", "phase_predict", "phase_lead")


class SelectorFileError(ValueError):
    """A selector file that cannot be used; the message names the file, the field and the value."""


@dataclass
class SelectorFile:
    """The contents of a selector file.

    Attributes:
        selector: the selector config (the fields of ``SelectorConfig``).
        set_b: indices of the measured beams (Set B), ascending.
        codebook: ``[M, N]`` complex64 beams (values).
        weights: learned weights (names as in the module docstring, torch layouts), empty if untrained.
        metadata: every metadata string of the file.
    """

    selector: dict
    set_b: list[int]
    codebook: np.ndarray
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def num_beams(self) -> int:
        return int(self.codebook.shape[0])

    @property
    def num_ant(self) -> int:
        return int(self.codebook.shape[1])


def check_selector_config(cfg: object, where: str = "selector") -> dict:
    """Validate a selector config dict (the same rules as ``SelectorConfig``); returns a clean copy."""
    if not isinstance(cfg, dict):
        raise SelectorFileError(f"{where}: the selector config must be an object, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - set(_CONFIG_FIELDS))
    missing = [k for k in _CONFIG_FIELDS if k not in cfg and k not in _OPTIONAL_FIELDS]
    if unknown or missing:
        raise SelectorFileError(f"{where}: selector config has unknown fields {unknown} and misses {missing}; "
                                f"expected exactly {list(_CONFIG_FIELDS)} ({list(_OPTIONAL_FIELDS)} optional)")

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    arch = cfg.get("arch", "conv")
    if arch != "conv":
        raise SelectorFileError(f"{where}: field 'arch' = {arch!r} has no Keras port; expected 'conv' (the "
                                "convolution-key selector)")
    extra = sorted(k for k in ("layers", "heads", "query", "phase_predict", "phase_lead") if k in cfg)
    if extra:
        raise SelectorFileError(f"{where}: fields {extra} apply to arch = 'transformer'; expected them left out")
    checks = (
        ("normalizer", cfg["normalizer"] in ("softmax", "sparsemax", "entmax15"),
         "'softmax', 'sparsemax' or 'entmax15'"),
        ("mode", cfg["mode"] in ("soft", "hard", "topk"), "'soft', 'hard' or 'topk'"),
        ("topk", is_int(cfg["topk"]) and cfg["topk"] >= 1, "an integer >= 1"),
        ("temperature", isinstance(cfg["temperature"], (int, float)) and not isinstance(cfg["temperature"], bool)
         and math.isfinite(cfg["temperature"]) and cfg["temperature"] > 0, "a finite number > 0"),
        ("history", is_int(cfg["history"]) and cfg["history"] >= 1, "an integer >= 1"),
        ("neighbours", is_int(cfg["neighbours"]) and cfg["neighbours"] >= 0, "an integer >= 0"),
        ("d_model", is_int(cfg["d_model"]) and cfg["d_model"] >= 1, "an integer >= 1"),
        ("cophase", isinstance(cfg["cophase"], bool), "true or false"),
        ("learned", isinstance(cfg["learned"], bool), "true or false"),
    )
    for name, ok, expected in checks:
        if not ok:
            raise SelectorFileError(f"{where}: field '{name}' = {cfg[name]!r}; expected {expected}")
    out = {k: cfg[k] for k in _CONFIG_FIELDS if k not in _OPTIONAL_FIELDS}
    grid = cfg.get("grid")
    if grid is not None:
        if not (isinstance(grid, (list, tuple)) and len(grid) == 2 and all(is_int(g) and g >= 1 for g in grid)):
            raise SelectorFileError(f"{where}: field 'grid' = {grid!r}; expected [M_v, M_h], two integers >= 1, "
                                    "or none")
        if grid[0] > 1:  # [1, M] is the 1-D path, stored without the field (as SelectorConfig does)
            out["grid"] = [int(grid[0]), int(grid[1])]
    return out


def kernel_radii(selector: dict) -> tuple[int, int]:
    """``(n_v, n_h)``: the key convolution's reach on each grid axis, as ``SelectorConfig.kernel_radii``
    (``(0, neighbours)`` without a grid)."""
    n = selector["neighbours"]
    grid = selector.get("grid")
    if grid is None:
        return 0, n
    return min(n, (grid[0] - 1) // 2), min(n, (grid[1] - 1) // 2)


def check_grid(selector: dict, num_beams: int, where: str) -> None:
    """A config's ``grid`` (if any) must hold the ``M`` beams of the codebook: ``M_v·M_h == M``."""
    grid = selector.get("grid")
    if grid is not None and grid[0] * grid[1] != num_beams:
        raise SelectorFileError(f"{where}: field 'grid' = {list(grid)} has {grid[0] * grid[1]} beams; expected "
                                f"M_v·M_h = the codebook size M = {num_beams}")


def weight_shapes(selector: dict, num_beams: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the learned weights of a config (empty for the untrained selector)."""
    if not selector["learned"]:
        return {}
    d, c = selector["d_model"], selector["history"] + 1
    n_v, n_h = kernel_radii(selector)
    # [d, L+1, 2n+1] (Conv1d), or [d, L+1, kv, kh] (Conv2d) with a grid.
    conv = (d, c, 2 * n_h + 1) if selector.get("grid") is None else (d, c, 2 * n_v + 1, 2 * n_h + 1)
    return {"key_conv_weight": conv, "key_conv_bias": (d,), "query": (d,), "beam_bias": (num_beams,)}


def check_set_b(set_b: object, num_beams: int, where: str) -> list[int]:
    """Validate Set B: a non-empty ascending list of distinct beam indices in ``[0, M)``."""
    if (not isinstance(set_b, list) or not set_b
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < num_beams for i in set_b)
            or sorted(set(set_b)) != set_b):
        raise SelectorFileError(f"{where}: field 'set_b' = {str(set_b)[:60]}; expected a non-empty ascending list "
                                f"of distinct beam indices in [0, {num_beams})")
    return list(set_b)


def write_selector_file(path: str | Path, selector: dict, codebook: np.ndarray, set_b: list[int],
                        weights: dict[str, np.ndarray] | None = None, *, beamattn_version: str = "",
                        source: str = "") -> Path:
    """Write a selector file atomically (a temporary file, then ``os.replace``).

    Args:
        path: the ``.safetensors`` file to write.
        selector: the selector config (validated with :func:`check_selector_config`).
        codebook: ``[M, N]`` complex beams; stored as complex64 (float32 parts).
        set_b: indices of the measured beams.
        weights: the learned weights (names and torch layouts of the module docstring), cast to float32.
        beamattn_version, source: stored as metadata (what wrote the file, from what).

    Returns:
        ``path``.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    where = f"keras selector {path}"
    selector = check_selector_config(selector, where)
    codebook = np.asarray(codebook)
    if codebook.ndim != 2 or not np.iscomplexobj(codebook):
        raise SelectorFileError(f"{where}: codebook has shape {codebook.shape} and dtype {codebook.dtype}; "
                                "expected a complex [M, N] array")
    m, n = codebook.shape
    check_grid(selector, m, where)
    set_b = check_set_b([int(i) for i in set_b], m, where)
    measured = np.zeros(m, dtype=np.uint8)
    measured[set_b] = 1
    # Contiguous copies: safetensors.numpy (0.8) writes a strided view's raw buffer (``.real`` of a complex
    # array would come back interleaved with the imaginary parts).
    arrays = {"codebook_real": np.ascontiguousarray(codebook.real, dtype=np.float32),
              "codebook_imag": np.ascontiguousarray(codebook.imag, dtype=np.float32),
              "measured": measured}
    expected = weight_shapes(selector, m)
    weights = weights or {}
    if set(weights) != set(expected):
        raise SelectorFileError(f"{where}: weights {sorted(weights)} do not match the config; expected "
                                f"{sorted(expected)}")
    for name, shape in expected.items():
        w = np.ascontiguousarray(weights[name], dtype=np.float32)
        if w.shape != shape:
            raise SelectorFileError(f"{where}: weight '{name}' has shape {w.shape}; expected {shape}")
        arrays[name] = w
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            raise SelectorFileError(f"{where}: tensor '{name}' has NaN/Inf values")
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                "selector": json.dumps(selector, allow_nan=False),  # strict JSON, as every file beamattn writes
                "num_beams": str(m), "num_ant": str(n), "set_b": json.dumps(set_b, allow_nan=False),
                "beamattn_version": beamattn_version, "source": source}
    return write_file_atomic(path, lambda tmp: save_file(arrays, tmp, metadata=metadata))


def read_selector_file(path: str | Path) -> SelectorFile:
    """Read and validate a selector file written by ``beamattn export --format keras``.

    Raises:
        SelectorFileError: missing or unreadable file, a torch checkpoint or another file instead,
            a foreign format version, a bad config, missing/extra tensors, wrong shapes or dtypes, NaN/Inf.
    """
    from safetensors import safe_open

    path = Path(path)
    where = f"keras selector {path}"
    if not path.is_file():
        raise SelectorFileError(f"{where}: file not found")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise SelectorFileError(f"{where}: not a readable safetensors file ({e})") from None
    fmt = meta.get("format")
    if fmt != FORMAT_NAME:
        if _CHECKPOINT_KEY in meta:
            raise SelectorFileError(f"{where}: this is a torch checkpoint of `beamattn train`, not a Keras selector "
                                    "file; convert it with `beamattn export --format keras CHECKPOINT --out FILE`")
        raise SelectorFileError(f"{where}: metadata 'format' = {fmt!r}; expected {FORMAT_NAME!r} (a file written "
                                "by `beamattn export --format keras`)")
    version = meta.get("format_version")
    if version != str(FORMAT_VERSION):
        raise SelectorFileError(f"{where}: metadata 'format_version' = {version!r}; this beamattn reads version "
                                f"{FORMAT_VERSION} (export the checkpoint again with this version, or upgrade "
                                "beamattn)")
    try:
        selector = json.loads(meta["selector"])
        m, n = int(meta["num_beams"]), int(meta["num_ant"])
        set_b = json.loads(meta["set_b"])
    except (KeyError, ValueError) as e:
        raise SelectorFileError(f"{where}: corrupt or missing metadata ({type(e).__name__}: {e}); expected "
                                "'selector', 'num_beams', 'num_ant' and 'set_b'") from None
    selector = check_selector_config(selector, where)
    if m < 1 or n < 1:
        raise SelectorFileError(f"{where}: metadata num_beams = {m}, num_ant = {n}; expected integers >= 1")
    check_grid(selector, m, where)
    set_b = check_set_b(set_b, m, where)
    try:
        with safe_open(str(path), framework="np") as f:
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise SelectorFileError(f"{where}: tensors not readable ({e})") from None
    expected = {"codebook_real": ((m, n), np.float32), "codebook_imag": ((m, n), np.float32),
                "measured": ((m,), np.uint8)}
    expected.update({k: (s, np.float32) for k, s in weight_shapes(selector, m).items()})
    if set(arrays) != set(expected):
        raise SelectorFileError(f"{where}: tensors {sorted(arrays)} do not match the config "
                                f"(learned = {selector['learned']}); expected {sorted(expected)}")
    for name, (shape, dtype) in expected.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != dtype:
            raise SelectorFileError(f"{where}: tensor '{name}' has shape {a.shape} and dtype {a.dtype}; expected "
                                    f"{shape} {np.dtype(dtype).name}")
        if not np.isfinite(a).all():
            raise SelectorFileError(f"{where}: tensor '{name}' has NaN/Inf values")
    if np.flatnonzero(arrays["measured"]).tolist() != set_b or not np.isin(arrays["measured"], (0, 1)).all():
        raise SelectorFileError(f"{where}: tensor 'measured' does not match metadata 'set_b' = {str(set_b)[:60]}")
    if selector["mode"] == "topk" and selector["topk"] > m:
        raise SelectorFileError(f"{where}: field 'topk' = {selector['topk']} exceeds the codebook size {m}")
    codebook = (arrays["codebook_real"] + 1j * arrays["codebook_imag"]).astype(np.complex64)  # [M, N]
    weights = {k: arrays[k] for k in weight_shapes(selector, m)}
    return SelectorFile(selector=selector, set_b=set_b, codebook=codebook, weights=weights, metadata=meta)
