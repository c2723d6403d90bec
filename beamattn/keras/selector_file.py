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
``key_conv_weight`` ``[d, C, 2n+1]``    learned only: the key convolution (torch Conv1d layout:
                                        out channels, in channels, width); with a ``grid``,
                    ``[d, C, kv, kh]``  the 2-D one (torch Conv2d layout), ``kv = 2 n_v + 1``,
                                        ``kh = 2 n_h + 1`` (``n_v = min(n, (M_v-1)//2)``, same for h);
                                        ``C = L+1`` input channels, ``2L+1`` with ``csi_keys``
``key_conv_bias``   ``[d]``             learned only
``query``           ``[d]``             learned only: the query vector
``beam_bias``       ``[M]``             learned only: the per-beam score bias
==================  ==================  =====================================================

A learned selector with ``arch = "transformer"`` (:mod:`beamattn.wireless.selector_context`) adds, for
each self-attention block ``i = 0 .. layers-1`` (torch layouts: a ``Linear`` weight is ``[out, in]``,
``y = x Wᵀ + b``; ``H`` = heads, ``d_h = d / H``; head ``h`` owns features ``h·d_h .. (h+1)·d_h - 1`` of
the q/k/v projections' outputs and of ``out_proj``'s inputs):

===================================  =================  ========================================================
name                                 shape              meaning
===================================  =================  ========================================================
``block{i}_norm1_{weight,bias}``     ``[d]``            LayerNorm before the attention (eps 1e-5)
``block{i}_q_proj_{weight,bias}``    ``[d, d]``, [d]    queries of every beam token
``block{i}_k_proj_{weight,bias}``    ``[d, d]``, [d]    keys of the measured beams' tokens (Set B)
``block{i}_v_proj_{weight,bias}``    ``[d, d]``, [d]    values of the measured beams' tokens
``block{i}_out_proj_{weight,bias}``  ``[d, d]``, [d]    output projection (mixes the heads)
``block{i}_pos_h_table``             ``[H, 2D_h+1]``    position bias per head and circular distance along the
                                                        codebook index (``m_h``); column ``D_h`` is distance 0,
                                                        ``D_h = max(1, min(8, M_h // 2))`` (``M_h = M`` for 1-D)
``block{i}_pos_v_table``             ``[H, 2D_v+1]``    grid only: the same along ``m_v``, ``D_v = max(1, min(8,
                                                        M_v // 2))``; the bias of a pair is the sum of the two
``block{i}_norm2_{weight,bias}``     ``[d]``            LayerNorm before the MLP
``block{i}_mlp_in_{weight,bias}``    ``[2d, d]``, [2d]  MLP: Linear, exact GELU, ...
``block{i}_mlp_out_{weight,bias}``   ``[d, 2d]``, [d]   ... Linear (both sub-layers residual)
``query_norm_{weight,bias}``         ``[2d]``           ``query = "context"`` only: LayerNorm of [mean token of
                                                        the measured beams, token of the serving beam]
``query_net_{weight,bias}``          ``[d, 2d]``, [d]   ``query = "context"`` only: its Linear map, added to
                                                        ``query``
===================================  =================  ========================================================

(``NAME_{weight,bias}`` stands for the two tensors ``NAME_weight`` and ``NAME_bias``.) The transformer
file has the same format version: its ``selector`` config names ``arch = "transformer"`` with the fields
``layers``, ``heads``, ``query``, ``phase_predict`` and ``phase_lead``; a conv config leaves all of them
out, as before they existed, so version-1 conv files are unchanged (and a reader that knows only the
conv selector refuses a transformer file by its ``arch``).

``csi_keys = true`` (either arch; absent means false, and a config without it is written without it) adds
no tensor: the key convolution reads ``L`` more input channels per beam, the gains of every beam on the
channel reconstructed from each complex report (``T = V_A V_B⁺`` ``[M, J]``, derived from the codebook and
Set B by the reader), so ``C = 2L+1`` (in the order: ``L`` relative RSRPs, the measured flag, ``L``
reconstructed gains). A reader that does not know the field refuses the file by it.

Metadata (strings): ``format`` = ``"beamattn-keras-selector"``, ``format_version`` = ``"1"``,
``selector`` (the selector config as JSON: normalizer, mode, topk, temperature, history ``L``,
neighbours ``n``, d_model ``d``, cophase, learned and, for a UPA grid of beams only, grid
``[M_v, M_h]`` — absent means 1-D keys; for a transformer also arch, layers, heads, query,
phase_predict and phase_lead; ``csi_keys`` only when true), ``num_beams`` (``M``), ``num_ant`` (``N``),
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
           "check_grid", "kernel_radii", "key_channels", "position_max_distances", "weight_shapes",
           "reconstruction_matrix", "read_selector_file", "write_selector_file", "ARCHS", "TRANSFORMER_FIELDS", "MAX_DISTANCE", "MLP_RATIO"]

FORMAT_NAME = "beamattn-keras-selector"
FORMAT_VERSION = 1
_CHECKPOINT_KEY = "beamattn_config"  # metadata key of a torch checkpoint (beamattn.wireless.checkpoint)

# The fields of beamattn.wireless.selector.SelectorConfig (kept in step by tests/test_keras_export.py).
_CONFIG_FIELDS = ("normalizer", "mode", "topk", "temperature", "history", "neighbours", "d_model", "cophase",
                  "learned", "grid", "arch", "layers", "heads", "query", "phase_predict", "phase_lead",
                  "csi_keys")
# Absent = None for grid (files written before the field existed, and every 1-D selector); absent = "conv" for
# arch, and a conv config leaves the transformer's fields out (SelectorConfig.to_dict); a transformer config
# missing one of them gets SelectorConfig's default; absent = False for csi_keys (SelectorConfig.to_dict leaves
# it out when False, so the files of RSRP-only keys are those of before the field existed).
_OPTIONAL_FIELDS = ("grid", "arch", "layers", "heads", "query", "phase_predict", "phase_lead", "csi_keys")
ARCHS = ("conv", "transformer")
# Fields used only by arch = "transformer", with SelectorConfig's defaults.
TRANSFORMER_FIELDS = {"layers": 1, "heads": 4, "query": "fixed", "phase_predict": False, "phase_lead": 0.75}
# Fixed by beamattn.wireless.selector_context.BeamSelfAttention (not config fields): the position tables' largest
# distinguished distance (before clipping to the grid) and the MLP's hidden size in units of d_model.
MAX_DISTANCE = 8
MLP_RATIO = 2


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
    if arch not in ARCHS:
        raise SelectorFileError(f"{where}: field 'arch' = {arch!r} has no Keras port; expected 'conv' (the "
                                "convolution-key selector) or 'transformer' (the contextual one)")
    if arch == "conv":
        extra = sorted(k for k in TRANSFORMER_FIELDS if k in cfg)
        if extra:
            raise SelectorFileError(f"{where}: fields {extra} apply to arch = 'transformer'; expected them left "
                                    "out")
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
    csi_keys = cfg.get("csi_keys", False)
    if not isinstance(csi_keys, bool):
        raise SelectorFileError(f"{where}: field 'csi_keys' = {csi_keys!r}; expected true or false")
    if csi_keys:  # stored only when true (as SelectorConfig.to_dict)
        out["csi_keys"] = True
    if arch == "transformer":
        t = {k: cfg.get(k, default) for k, default in TRANSFORMER_FIELDS.items()}
        lead = t["phase_lead"]
        checks = (
            ("layers", is_int(t["layers"]) and 0 <= t["layers"] <= 8,
             "an integer in [0, 8] (self-attention layers among beams)"),
            ("heads", is_int(t["heads"]) and t["heads"] >= 1 and cfg["d_model"] % t["heads"] == 0,
             f"an integer >= 1 that divides d_model = {cfg['d_model']}"),
            ("query", t["query"] in ("fixed", "context"), "'fixed' or 'context'"),
            ("phase_predict", isinstance(t["phase_predict"], bool), "true or false"),
            ("phase_lead", isinstance(lead, (int, float)) and not isinstance(lead, bool) and math.isfinite(lead)
             and 0 <= lead <= 100, "a number in [0, 100] (periods)"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise SelectorFileError(f"{where}: field '{name}' = {t[name]!r}; expected {expected}")
        out.update({"arch": "transformer", **t})
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


def position_max_distances(selector: dict, num_beams: int) -> tuple[int | None, int]:
    """``(D_v, D_h)``: the largest distinguished circular distance of the position tables on each grid axis,
    as ``BeamPositionBias`` (``D_v = None`` without a grid: 1-D codebooks have no vertical table)."""
    m_v, m_h = selector.get("grid") or (1, num_beams)
    d_h = max(1, min(MAX_DISTANCE, m_h // 2))
    return (max(1, min(MAX_DISTANCE, m_v // 2)) if m_v > 1 else None), d_h


def key_channels(selector: dict) -> int:
    """Input channels of the key convolution per beam: ``L`` relative RSRPs and the measured flag, plus ``L``
    reconstructed gains with ``csi_keys`` (``L+1`` or ``2L+1``)."""
    history = selector["history"]
    return history + 1 + (history if selector.get("csi_keys", False) else 0)


def weight_shapes(selector: dict, num_beams: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes (torch layouts) of the learned weights of a config (empty for the untrained selector).

    The conv selector's four tensors; a transformer's blocks and contextual query add those of the module
    docstring's second table, block by block. The key convolution reads :func:`key_channels` channels.
    """
    if not selector["learned"]:
        return {}
    d, c = selector["d_model"], key_channels(selector)
    n_v, n_h = kernel_radii(selector)
    # [d, C, 2n+1] (Conv1d), or [d, C, kv, kh] (Conv2d) with a grid.
    conv = (d, c, 2 * n_h + 1) if selector.get("grid") is None else (d, c, 2 * n_v + 1, 2 * n_h + 1)
    shapes = {"key_conv_weight": conv, "key_conv_bias": (d,), "query": (d,), "beam_bias": (num_beams,)}
    if selector.get("arch", "conv") != "transformer":
        return shapes
    heads, hidden = selector["heads"], MLP_RATIO * d
    dist_v, dist_h = position_max_distances(selector, num_beams)
    for i in range(selector["layers"]):
        b = f"block{i}_"
        shapes.update({b + "norm1_weight": (d,), b + "norm1_bias": (d,)})
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes.update({b + proj + "_weight": (d, d), b + proj + "_bias": (d,)})
        shapes[b + "pos_h_table"] = (heads, 2 * dist_h + 1)
        if dist_v is not None:
            shapes[b + "pos_v_table"] = (heads, 2 * dist_v + 1)
        shapes.update({b + "norm2_weight": (d,), b + "norm2_bias": (d,),
                       b + "mlp_in_weight": (hidden, d), b + "mlp_in_bias": (hidden,),
                       b + "mlp_out_weight": (d, hidden), b + "mlp_out_bias": (d,)})
    if selector["query"] == "context":
        shapes.update({"query_norm_weight": (2 * d,), "query_norm_bias": (2 * d,),
                       "query_net_weight": (d, 2 * d), "query_net_bias": (d,)})
    return shapes


def reconstruction_matrix(codebook: np.ndarray, set_b: list[int]) -> np.ndarray:
    """``T [M, J]`` complex64: Set B's reports ``y [J]`` map to every beam's response ``T y`` on the channel
    they give (NumPy, as ``beamattn.wireless.selector.reconstruction_matrix``; the ``csi_keys`` keys read it).

    A report is ``y_b = hᵀ v_b`` (no conjugate), so ``y = V_B h`` with ``V_B = codebook[set_b] [J, N]``; the
    minimum-norm least-squares channel is ``ĥ = V_B⁺ y`` and ``ĥᵀ v_m = (V_A V_B⁺ y)_m``: ``T = V_A V_B⁺``.
    Computed in float64 (complex128), with torch.linalg.pinv's cut-off for small singular values
    (``max(J, N)·eps`` relative), then rounded to complex64 as the torch selector does.

    Args:
        codebook: ``[M, N]`` complex beams (Set A).
        set_b: the ``J`` indices of the measured beams.
    """
    v = np.asarray(codebook).astype(np.complex128)  # [M, N]
    v_b = v[np.asarray(set_b)]  # [J, N]
    rcond = max(v_b.shape) * np.finfo(np.float64).eps
    return (v @ np.linalg.pinv(v_b, rcond)).astype(np.complex64)  # [M, J]


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
