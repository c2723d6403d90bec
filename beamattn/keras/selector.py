"""The attention beam selector as a Keras layer, for TensorFlow pipelines (Sionna 1.x).

The same computation as the torch :class:`beamattn.wireless.selector.AttentionSelector`
(see that module for the idea), in plain ``tf.*`` ops so that it runs with Keras 2
(TF <= 2.15, Sionna 1.x) and Keras 3 (TF >= 2.16): nothing here imports torch.

- **keys** (learned): per beam, the RSRP relative to the best *measured* beam of the
  latest report (dB/10, clamped to ``[-4, 0.5]``, 0 for unmeasured beams) for each of
  the last ``L`` reports, plus a measured flag — ``L+1`` channels over the ``M`` beams —
  through a circular convolution along the codebook index (width ``2n+1``) and an exact
  (erf) GELU: ``k [.., M, d]``. With a ``grid`` ``[M_v, M_h]`` (a UPA DFT grid of beams,
  ``m = m_v·M_h + m_h``) the convolution is circular and 2-D over ``(m_v, m_h)``, kernel
  ``(2 n_v + 1, 2 n_h + 1)`` with ``n_v = min(n, (M_v-1)//2)``, ``n_h = min(n, (M_h-1)//2)``.
  With ``csi_keys`` (either arch) the keys also read the complex reports: ``L`` more channels,
  each beam's gain ``|ĥ(t)ᵀ v_m|²`` on the channel reconstructed from each report's Set B values
  ``y_b = 10^{rsrp_b/20} e^{jφ_b}`` (``ĥᵀ v_m = (T y)_m``, ``T = V_A V_B⁺`` ``[M, J]`` from the
  codebook and Set B), in dB relative to the latest report's best beam, /10, clamped to
  ``[-4, 0.5]`` (:func:`reconstructed_gain_features`); the channels are then ``[L relative
  RSRPs, measured flag, L reconstructed gains]``, ``2L+1`` of them.
- **scores**: ``(q · k_i) / sqrt(d) / temperature + b_i`` (learned query ``q``, per-beam
  bias ``b``); the untrained selector scores a measured beam by its latest RSRP in dB
  divided by the temperature (dB) and excludes unmeasured beams.
- **weights**: softmax, sparsemax or 1.5-entmax over the ``M`` beams; ``topk`` mode keeps
  the ``topk`` largest scores and normalises over those only.
- **beams**: ``soft``/``topk``: the unit-norm ``Σ α_i v_i`` of the codebook beams ``v_i``
  (co-phased, ``v_i e^{-j φ_i}``, with the reported phases of measured beams when
  ``cophase``); ``hard``: the codebook beam of the largest weight.

The contextual selector (``arch = "transformer"``, :mod:`beamattn.wireless.selector_context`) adds:

- **beam self-attention** (``layers`` pre-LN blocks on the conv keys ``x [S, M, d]``):
  ``x += W_O·MHA(LN₁(x))`` where every beam token's query attends only to the measured
  beams' tokens (Set B, ``J`` of them), ``heads`` heads of size ``d_h = d / heads`` (head ``h``
  = features ``h·d_h ..`` of the projections), scores ``q·k / sqrt(d_h)`` plus a learned bias
  per head and *circular* grid distance (clamped to ``±D``: ``D = max(1, min(8, M_h // 2))``,
  and the sum with a second table along ``m_v`` for a grid), softmax; then
  ``x += Linear(GELU(Linear(LN₂(x))))`` (exact GELU; LayerNorm eps ``1e-5``, as torch).
- **contextual query** (``query = "context"``): ``q + Linear(LN([mean token of Set B, token
  of the serving beam]))``, the serving beam being the argmax of the latest report over Set B.
- **phase prediction** (``phase_predict`` with ``cophase``): the co-phasing phases are each
  beam's least-squares phase line over ``phase_history [..., T, M]`` extrapolated ``phase_lead``
  sample spacings (:func:`predict_phase`).

Get a layer with :meth:`AttentionSelectorLayer.from_file` from the file that
``beamattn export --format keras CHECKPOINT --out FILE`` writes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from .normalizers import NORMALIZERS
from .selector_file import (SelectorFileError, check_grid, check_selector_config, check_set_b, key_channels,
                            kernel_radii, position_max_distances, read_selector_file, reconstruction_matrix,
                            weight_shapes)

__all__ = ["AttentionSelectorLayer", "relative_rsrp_features", "reconstructed_gain_features",
           "reconstruction_matrix", "predict_phase", "wrap_phase"]

_FLOOR_DB = -40.0  # reports this far below the best beam carry no information (as in the torch selector)
_NEG_INF = float("-inf")
_LN_EPS = 1e-5  # torch.nn.LayerNorm's default eps


def relative_rsrp_features(rsrp_db: tf.Tensor, measured: tf.Tensor) -> tf.Tensor:
    """RSRP relative to the best measured beam of the latest report, in units of 10 dB.

    Args:
        rsrp_db: ``[S, L, M]`` float32 reports (dB), oldest first.
        measured: ``[M]`` bool, the beams of Set B.

    Returns:
        ``[S, L, M]`` in ``[-4, 0.5]``; unmeasured beams are 0 (the measured flag tells them apart).
    """
    latest = tf.where(measured, rsrp_db[:, -1, :], _NEG_INF)  # [S, M]
    ref = tf.reduce_max(latest, axis=-1)[:, None, None]  # [S, 1, 1]
    rel = tf.clip_by_value((rsrp_db - ref) / 10.0, _FLOOR_DB / 10.0, 0.5)  # [S, L, M]
    return tf.where(measured, rel, tf.zeros_like(rel))


def reconstructed_gain_features(rsrp_db: tf.Tensor, phase: tf.Tensor, recon: tf.Tensor, set_b: list[int]
                                ) -> tf.Tensor:
    """Every beam's gain on the channel reconstructed from each complex report, relative to the latest best.

    Args:
        rsrp_db: ``[S, L, M]`` float32 reports (dB), oldest first; only Set B entries are read.
        phase: ``[S, L, M]`` float32, the same reports' phases (rad); only Set B entries are read.
        recon: ``[M, J]`` complex64, :func:`reconstruction_matrix`.
        set_b: the ``J`` indices of the measured beams.

    Returns:
        ``[S, L, M]`` in ``[-4, 0.5]``: ``10 log10 |T y(t)|²`` of every beam (floored at 1e-30 before the log),
        minus the largest of the latest report, in units of 10 dB; ``y_b = 10^{rsrp_b/20} e^{jφ_b}``.
    """
    amp = tf.pow(tf.constant(10.0, rsrp_db.dtype), tf.gather(rsrp_db, set_b, axis=-1) / 20.0)  # [S, L, J]
    ph = tf.gather(phase, set_b, axis=-1)  # [S, L, J]
    y = tf.complex(amp * tf.cos(ph), amp * tf.sin(ph))  # [S, L, J] complex64
    gain = tf.square(tf.abs(tf.matmul(y, recon, transpose_b=True)))  # [S, L, M] |ĥ(t)ᵀ v_m|²
    gain_db = 10.0 * tf.math.log(tf.maximum(gain, 1e-30)) / tf.constant(math.log(10.0), gain.dtype)  # [S, L, M]
    ref = tf.reduce_max(gain_db[:, -1:, :], axis=-1, keepdims=True)  # [S, 1, 1] the latest report's best beam
    return tf.clip_by_value((gain_db - ref) / 10.0, _FLOOR_DB / 10.0, 0.5)  # [S, L, M]


def wrap_phase(x: tf.Tensor) -> tf.Tensor:
    """Angles (rad) wrapped to ``[-π, π)``, as ``beamattn.wireless.selector_context.wrap_phase``."""
    return tf.math.floormod(x + math.pi, 2 * math.pi) - math.pi


def predict_phase(phase: tf.Tensor, lead: float) -> tf.Tensor:
    """Extrapolate each beam's phase ``lead`` sample spacings after its last sample (the TF counterpart of
    ``beamattn.wireless.selector_context.predict_phase``).

    Args:
        phase: ``[..., T, M]`` float phases (rad), oldest first, equally spaced in time, ``T >= 1``.
        lead: how far ahead, in sample spacings.

    Returns:
        ``[..., M]`` (rad, wrapped to ``[-π, π)``): ``φ_T + slope · lead``, ``slope`` the least-squares slope of
        the unwrapped phases (each step's increment wrapped: exact while ``|Δφ| < π``); with ``T = 1`` the
        latest phase itself (not wrapped).
    """
    phase = tf.convert_to_tensor(phase)
    t = tf.shape(phase)[-2]
    inc = wrap_phase(phase[..., 1:, :] - phase[..., :-1, :])  # [..., T-1, M]
    unwrapped = tf.concat([tf.zeros_like(phase[..., :1, :]), tf.cumsum(inc, axis=-2)], axis=-2)  # [..., T, M]
    tau = tf.range(t, dtype=tf.int32)  # [T]
    tau = tf.cast(tau, phase.dtype) - tf.cast(t - 1, phase.dtype) / 2  # [T] centred times (sample spacings)
    denom = tf.reduce_sum(tau**2)  # 0 for T = 1
    num = tf.reduce_sum(tau[:, None] * unwrapped, axis=-2)  # [..., M]
    slope = num / tf.where(denom > 0, denom, tf.ones_like(denom))  # [..., M] rad per sample spacing
    fit_last = tf.reduce_mean(unwrapped, axis=-2) + slope * tau[-1]  # [..., M] the fitted line at the last sample
    predicted = wrap_phase(phase[..., 0, :] + fit_last + slope * tf.constant(lead, phase.dtype))  # [..., M]
    return tf.where(t > 1, predicted, phase[..., -1, :])  # T = 1: the latest phase


def _layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """LayerNorm over the last axis (biased variance, eps 1e-5: ``torch.nn.LayerNorm``); ``x [..., F]``."""
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)  # [..., 1]
    centred = x - mean  # [..., F]
    var = tf.reduce_mean(tf.square(centred), axis=-1, keepdims=True)  # [..., 1]
    return centred * tf.math.rsqrt(var + _LN_EPS) * gamma + beta  # [..., F]


def _linear(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """``x kernel + bias``: ``x [..., in]``, ``kernel [in, out]`` (``torch.nn.Linear``'s weight transposed)."""
    return tf.matmul(x, kernel) + bias  # [..., out]


def _position_index(num_beams: int, grid: list[int] | None, set_b: list[int], max_distance: int,
                    axis: int) -> np.ndarray:
    """Column of a position table for every (query beam, measured beam) pair, ``[M, J]`` int32.

    ``axis`` 1 = along ``m_h`` (the codebook index for 1-D), 0 = along ``m_v``; the signed circular distance
    ``(Δ + G // 2) mod G - G // 2`` on that axis (``G`` its size), clamped to ``±max_distance``, plus
    ``max_distance`` (the table's column of distance 0), as ``BeamPositionBias``.
    """
    m_v, m_h = grid or (1, num_beams)
    beams = np.arange(num_beams)  # [M]
    pos = beams // m_h if axis == 0 else beams % m_h  # [M] grid coordinate on the axis
    size = m_v if axis == 0 else m_h
    d = pos[np.asarray(set_b)][None, :] - pos[:, None]  # [M, J] key position - query position
    d = (d + size // 2) % size - size // 2  # [M, J] in [-size // 2, (size - 1) // 2]
    return (np.clip(d, -max_distance, max_distance) + max_distance).astype(np.int32)


@tf.keras.utils.register_keras_serializable(package="beamattn")
class AttentionSelectorLayer(tf.keras.layers.Layer):
    """Attention over the codebook's beams (see the module docstring).

    Args:
        selector: the selector config, a dict with the fields of ``SelectorConfig``
            (normalizer, mode, topk, temperature, history, neighbours, d_model, cophase, learned; and grid
            ``[M_v, M_h]`` for a UPA grid of beams, whose keys are a circular 2-D convolution; and arch =
            ``"transformer"`` with layers, heads, query, phase_predict, phase_lead for the contextual selector;
            and csi_keys, either arch, for keys that also read the complex reports).
        num_beams: ``M``, the codebook size (Set A).
        num_ant: ``N``, base-station antennas.
        set_b: indices of the measured beams (Set B), ascending.
        arrays: initial values from a selector file (``codebook`` ``[M, N]`` complex and the learned
            weights in torch layouts, see :mod:`beamattn.keras.selector_file`); None leaves zeros,
            to be filled by Keras when loading a saved model (or by ``set_weights``).
        **kwargs: passed to ``tf.keras.layers.Layer`` (``name``, ...); the dtype is float32.

    Call arguments:
        rsrp_db: ``[..., L', M]`` reports in dB, oldest first, ``L' >= L``; the last ``L`` are used,
            and only Set B entries are read (others may hold anything, NaN included).
        phase: ``[..., M]`` latest reported phases in rad (needed when ``cophase``; Set B entries read;
            not needed, and not read, when ``phase_predict``).
        phase_history: ``[..., T, M]`` equally spaced phases in rad, oldest first, the last one at the latest
            report (``T >= 1``): needed when ``phase_predict`` and ``cophase`` (each beam's phase is then
            predicted at the use interval, :func:`predict_phase`); otherwise not read.
        phase_lead: the prediction horizon in units of ``phase_history``'s spacing (default: the config's
            ``phase_lead``, in report periods).
        report_phase: ``[..., L', M]`` the phases (rad) of the reports ``rsrp_db`` (the same shape): needed
            when ``csi_keys`` (learned), whose keys read the complex reports; otherwise not read. Set B
            entries of the last ``L`` reports are read.

    Returns:
        A dict: ``beams`` ``[..., N]`` complex64 with unit norm; ``weights`` ``[..., M]`` float32
        (sum 1, exact zeros for sparsemax/entmax/top-k); ``index`` ``[...]`` int64, the beam of the
        largest weight; ``entropy`` ``[...]`` float32 in nats; ``active`` ``[...]`` int64, the
        number of non-zero weights.

    Weights (Keras variables): ``codebook_real``/``codebook_imag`` ``[M, N]`` (not trainable) and,
    when learned, ``key_conv_kernel`` ``[2n+1, C, d]`` (``tf.nn.conv1d`` layout; with a grid
    ``[kv, kh, C, d]``, ``tf.nn.conv2d`` layout; ``C = L+1``, or ``2L+1`` with ``csi_keys``), ``key_conv_bias``
    ``[d]``, ``query`` ``[d]`` and ``beam_bias`` ``[M]`` (trainable). With ``csi_keys``, ``recon_real`` /
    ``recon_imag`` ``[M, J]`` (not trainable) hold :func:`reconstruction_matrix` of the codebook and Set B,
    computed when the layer is made from a file's arrays (and saved with a Keras model, so a loaded model
    has them; assigning another codebook to the variables does not recompute them). A learned transformer adds the
    tensors of the file (:mod:`beamattn.keras.selector_file`) under the same names, except that each
    ``Linear`` weight ``NAME_weight`` ``[out, in]`` is the variable ``NAME_kernel`` ``[in, out]``
    (``x @ kernel``); LayerNorm weights and biases and the position tables keep their names and shapes.
    """

    def __init__(self, selector: dict, num_beams: int, num_ant: int, set_b: list[int],
                 arrays: dict[str, np.ndarray] | None = None, **kwargs) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        where = f"AttentionSelectorLayer {self.name!r}"
        self.selector = check_selector_config(dict(selector), where)
        for field, value in (("num_beams", num_beams), ("num_ant", num_ant)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}: argument '{field}' = {value!r}; expected an integer >= 1")
        self.num_beams, self.num_ant = num_beams, num_ant
        self.set_b = check_set_b([int(i) for i in set_b], num_beams, where)
        cfg = self.selector
        if cfg["mode"] == "topk" and cfg["topk"] > num_beams:
            raise ValueError(f"{where}: field 'topk' = {cfg['topk']} exceeds the codebook size {num_beams}")
        try:
            check_grid(cfg, num_beams, where)
        except SelectorFileError as e:
            raise ValueError(str(e)) from None
        measured = np.zeros(num_beams, dtype=bool)
        measured[self.set_b] = True
        self._measured_np = measured  # [M] bool (a constant: part of the config, not a weight)

        m, n = num_beams, num_ant
        self.codebook_real = self.add_weight(name="codebook_real", shape=(m, n), initializer="zeros",
                                             trainable=False, dtype="float32")
        self.codebook_imag = self.add_weight(name="codebook_imag", shape=(m, n), initializer="zeros",
                                             trainable=False, dtype="float32")
        if cfg["learned"]:
            d, c = cfg["d_model"], key_channels(cfg)
            n_v, n_h = kernel_radii(cfg)
            # [2n+1, C, d] (tf.nn.conv1d), or [kv, kh, C, d] (tf.nn.conv2d) with a grid of beams.
            kernel = (2 * n_h + 1, c, d) if cfg.get("grid") is None else (2 * n_v + 1, 2 * n_h + 1, c, d)
            self.key_conv_kernel = self.add_weight(name="key_conv_kernel", shape=kernel, initializer="zeros",
                                                   dtype="float32")
            self.key_conv_bias = self.add_weight(name="key_conv_bias", shape=(d,), initializer="zeros",
                                                 dtype="float32")
            self.query = self.add_weight(name="query", shape=(d,), initializer="zeros", dtype="float32")
            self.beam_bias = self.add_weight(name="beam_bias", shape=(m,), initializer="zeros", dtype="float32")
        self._csi_keys = bool(cfg["learned"] and cfg.get("csi_keys", False))
        if self._csi_keys:
            # T = V_A V_B⁺ [M, J]: derived from the codebook and Set B (not learned), kept as weights so that a
            # saved Keras model carries it (a layer made from a config gets it with the codebook's values).
            j = len(self.set_b)
            self.recon_real = self.add_weight(name="recon_real", shape=(m, j), initializer="zeros",
                                              trainable=False, dtype="float32")
            self.recon_imag = self.add_weight(name="recon_imag", shape=(m, j), initializer="zeros",
                                              trainable=False, dtype="float32")
        # The transformer's weights, by variable name (see the class docstring): file names, with each Linear
        # weight [out, in] stored as a kernel [in, out].
        self._transformer_weights: dict[str, tf.Variable] = {}
        if cfg["learned"] and cfg.get("arch") == "transformer":
            for name, shape in weight_shapes(cfg, m).items():
                if name in ("key_conv_weight", "key_conv_bias", "query", "beam_bias"):
                    continue
                var_name, var_shape = self._variable_of(name, shape)
                # LayerNorm scales start at 1 (a layer built without arrays is a valid, if untrained, selector).
                init = "ones" if name.endswith(("norm1_weight", "norm2_weight", "norm_weight")) else "zeros"
                self._transformer_weights[var_name] = self.add_weight(name=var_name, shape=var_shape,
                                                                      initializer=init, dtype="float32")
            dist_v, dist_h = position_max_distances(cfg, m)
            grid = cfg.get("grid")
            # [M, J] columns of the position tables per (query beam, measured beam): constants of the config.
            self._pos_index_h = _position_index(m, grid, self.set_b, dist_h, axis=1)
            self._pos_index_v = None if dist_v is None else _position_index(m, grid, self.set_b, dist_v, axis=0)
        if arrays is not None:
            self._assign(arrays, where)

    @staticmethod
    def _variable_of(file_name: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        """The Keras variable (name, shape) of a transformer tensor of the file (Linear weights transposed)."""
        if file_name.endswith("_weight") and len(shape) == 2:
            return file_name[: -len("_weight")] + "_kernel", (shape[1], shape[0])
        return file_name, shape

    def _assign(self, arrays: dict[str, np.ndarray], where: str) -> None:
        """Set the variables from a selector file's arrays (torch layouts)."""
        codebook = np.asarray(arrays["codebook"])
        if codebook.shape != (self.num_beams, self.num_ant):
            raise ValueError(f"{where}: codebook has shape {codebook.shape}; expected "
                             f"[M, N] = ({self.num_beams}, {self.num_ant})")
        self.codebook_real.assign(codebook.real.astype(np.float32))
        self.codebook_imag.assign(codebook.imag.astype(np.float32))
        if self._csi_keys:
            recon = reconstruction_matrix(codebook.astype(np.complex64), self.set_b)  # [M, J], as the torch selector
            self.recon_real.assign(recon.real)
            self.recon_imag.assign(recon.imag)
        expected = weight_shapes(self.selector, self.num_beams)
        if set(arrays) - {"codebook"} != set(expected):
            raise ValueError(f"{where}: weights {sorted(set(arrays) - {'codebook'})} do not match the config; "
                             f"expected {sorted(expected)}")
        if not expected:
            return
        conv = np.asarray(arrays["key_conv_weight"], dtype=np.float32)  # [d, C, K] or [d, C, kv, kh] (torch)
        if conv.ndim == 3:
            self.key_conv_kernel.assign(np.transpose(conv, (2, 1, 0)))  # [K, C, d] (tf.nn.conv1d)
        else:
            self.key_conv_kernel.assign(np.transpose(conv, (2, 3, 1, 0)))  # [kv, kh, C, d] (tf.nn.conv2d)
        self.key_conv_bias.assign(np.asarray(arrays["key_conv_bias"], dtype=np.float32))
        self.query.assign(np.asarray(arrays["query"], dtype=np.float32))
        self.beam_bias.assign(np.asarray(arrays["beam_bias"], dtype=np.float32))
        for name, shape in expected.items():
            if name in ("key_conv_weight", "key_conv_bias", "query", "beam_bias"):
                continue
            value = np.asarray(arrays[name], dtype=np.float32)
            if value.shape != shape:
                raise ValueError(f"{where}: weight '{name}' has shape {value.shape}; expected {shape}")
            var_name, _ = self._variable_of(name, shape)
            self._transformer_weights[var_name].assign(value.T if var_name.endswith("_kernel") else value)

    # ------------------------------------------------------------------ files and configs

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> "AttentionSelectorLayer":
        """The layer stored in a file written by ``beamattn export --format keras``.

        Raises:
            SelectorFileError: a missing, corrupt or foreign file (the message says which and why).
        """
        f = read_selector_file(path)
        return cls(f.selector, f.num_beams, f.num_ant, f.set_b, arrays={"codebook": f.codebook, **f.weights},
                   **kwargs)

    def get_config(self) -> dict:
        """The layer's structure (its arrays are Keras weights, saved with the model)."""
        config = super().get_config()
        config.update({"selector": dict(self.selector), "num_beams": self.num_beams, "num_ant": self.num_ant,
                       "set_b": list(self.set_b)})
        return config

    @classmethod
    def from_config(cls, config: dict) -> "AttentionSelectorLayer":
        return cls(**config)

    # ------------------------------------------------------------------ the computation

    def _keys(self, rsrp_db: tf.Tensor, measured: tf.Tensor, report_phase: tf.Tensor | None = None) -> tf.Tensor:
        """Keys ``[S, M, d]`` from reports ``rsrp_db [S, L, M]`` (and, with ``csi_keys``, their phases
        ``report_phase [S, L, M]``) (learned selector)."""
        cfg = self.selector
        rel = relative_rsrp_features(rsrp_db, measured)  # [S, L, M]
        flag = tf.broadcast_to(tf.cast(measured, rel.dtype), tf.shape(rel[:, :1, :]))  # [S, 1, M]
        parts = [rel, flag]
        if self._csi_keys:
            recon = tf.complex(self.recon_real, self.recon_imag)  # [M, J]
            parts.append(reconstructed_gain_features(rsrp_db, report_phase, recon, self.set_b))  # [S, L, M]
        feat = tf.transpose(tf.concat(parts, axis=1), (0, 2, 1))  # [S, M, C] (channels last), C = L+1 (+L)
        n, m = cfg["neighbours"], self.num_beams
        grid = cfg.get("grid")
        if grid is None:
            wrap = np.arange(-n, m + n) % m  # circular padding along the codebook index: [M + 2n]
            padded = tf.gather(feat, wrap, axis=1)  # [S, M + 2n, C]
            k = tf.nn.conv1d(padded, self.key_conv_kernel, stride=1, padding="VALID")  # [S, M, d]
        else:
            # A UPA grid of beams, m = m_v·M_h + m_h: circular padding on both grid axes, then a 2-D conv.
            m_v, m_h = grid
            n_v, n_h = kernel_radii(cfg)
            img = tf.reshape(feat, [-1, m_v, m_h, key_channels(cfg)])  # [S, Mv, Mh, C]
            img = tf.gather(img, np.arange(-n_v, m_v + n_v) % m_v, axis=1)  # [S, Mv + 2n_v, Mh, C]
            img = tf.gather(img, np.arange(-n_h, m_h + n_h) % m_h, axis=2)  # [S, Mv + 2n_v, Mh + 2n_h, C]
            k = tf.nn.conv2d(img, self.key_conv_kernel, strides=1, padding="VALID")  # [S, Mv, Mh, d]
            k = tf.reshape(k, [-1, m, cfg["d_model"]])  # [S, M, d] in beam order
        return tf.nn.gelu(k + self.key_conv_bias, approximate=False)  # exact (erf) GELU, as torch.nn.GELU()

    def _position_bias(self, block: int) -> tf.Tensor:
        """Block ``block``'s position bias ``[H, M, J]`` (query beams x measured beams), as ``BeamPositionBias``."""
        w = self._transformer_weights
        bias = tf.gather(w[f"block{block}_pos_h_table"], self._pos_index_h, axis=1)  # [H, M, J]
        if self._pos_index_v is not None:
            bias = bias + tf.gather(w[f"block{block}_pos_v_table"], self._pos_index_v, axis=1)  # [H, M, J]
        return bias

    def _self_attention(self, x: tf.Tensor, block: int) -> tf.Tensor:
        """One pre-LN block (``BeamSelfAttention``) on beam tokens ``x [S, M, d]`` -> ``[S, M, d]``."""
        w, b = self._transformer_weights, f"block{block}_"
        m, j = self.num_beams, len(self.set_b)
        heads = self.selector["heads"]
        d = self.selector["d_model"]
        d_h = d // heads
        y = _layer_norm(x, w[b + "norm1_weight"], w[b + "norm1_bias"])  # [S, M, d]
        keys = tf.gather(y, self.set_b, axis=1)  # [S, J, d]: only the measured beams carry a report
        q = _linear(y, w[b + "q_proj_kernel"], w[b + "q_proj_bias"])  # [S, M, d]
        k = _linear(keys, w[b + "k_proj_kernel"], w[b + "k_proj_bias"])  # [S, J, d]
        v = _linear(keys, w[b + "v_proj_kernel"], w[b + "v_proj_bias"])  # [S, J, d]
        # Head h owns features h·d_h .. (h+1)·d_h - 1 (MultiHeadAttention's view(B, L, H, d_h)).
        q = tf.transpose(tf.reshape(q, [-1, m, heads, d_h]), (0, 2, 1, 3))  # [S, H, M, d_h]
        k = tf.transpose(tf.reshape(k, [-1, j, heads, d_h]), (0, 2, 1, 3))  # [S, H, J, d_h]
        v = tf.transpose(tf.reshape(v, [-1, j, heads, d_h]), (0, 2, 1, 3))  # [S, H, J, d_h]
        scale = tf.constant(1.0 / math.sqrt(d_h), tf.float32)
        scores = tf.matmul(q * scale, k, transpose_b=True) + self._position_bias(block)  # [S, H, M, J]
        att = tf.matmul(tf.nn.softmax(scores, axis=-1), v)  # [S, H, M, d_h]
        att = tf.reshape(tf.transpose(att, (0, 2, 1, 3)), [-1, m, d])  # [S, M, d] heads concatenated
        x = x + _linear(att, w[b + "out_proj_kernel"], w[b + "out_proj_bias"])  # [S, M, d]
        y = _layer_norm(x, w[b + "norm2_weight"], w[b + "norm2_bias"])  # [S, M, d]
        hidden = tf.nn.gelu(_linear(y, w[b + "mlp_in_kernel"], w[b + "mlp_in_bias"]), approximate=False)  # [S, M, 2d]
        return x + _linear(hidden, w[b + "mlp_out_kernel"], w[b + "mlp_out_bias"])  # [S, M, d]

    def _query(self, k: tf.Tensor, rsrp_db: tf.Tensor, measured: tf.Tensor) -> tf.Tensor:
        """The contextual query ``[S, d]`` for keys ``k [S, M, d]`` and reports ``rsrp_db [S, L, M]``."""
        w = self._transformer_weights
        mean = tf.constant(self._measured_np.astype(np.float32) / len(self.set_b))  # [M] mean over Set B
        pooled = tf.einsum("smd,m->sd", k, mean)  # [S, d]
        latest = tf.where(measured, rsrp_db[:, -1, :], _NEG_INF)  # [S, M]
        serving = tf.argmax(latest, axis=-1, output_type=tf.int32)  # [S] the strongest reported beam
        own = tf.gather(k, serving, axis=1, batch_dims=1)  # [S, d]
        ctx = _layer_norm(tf.concat([pooled, own], axis=-1), w["query_norm_weight"], w["query_norm_bias"])  # [S, 2d]
        return self.query + _linear(ctx, w["query_net_kernel"], w["query_net_bias"])  # [S, d]

    def _values(self, phase: tf.Tensor | None, measured: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Real and imaginary parts of the values: ``[M, N]``, or ``[S, M, N]`` co-phased by ``-phase [S, M]``."""
        v_re, v_im = self.codebook_real, self.codebook_imag  # [M, N]
        if phase is None:
            return tf.convert_to_tensor(v_re), tf.convert_to_tensor(v_im)
        # e^{-j φ} for measured beams; 1 for unmeasured beams (no phase report).
        rot_re = tf.where(measured, tf.cos(-phase), tf.ones_like(phase))[..., None]  # [S, M, 1]
        rot_im = tf.where(measured, tf.sin(-phase), tf.zeros_like(phase))[..., None]
        return v_re * rot_re - v_im * rot_im, v_re * rot_im + v_im * rot_re  # [S, M, N] each

    def _check_inputs(self, rsrp_db: tf.Tensor, phase: tf.Tensor | None, phase_history: tf.Tensor | None,
                      phase_lead: float | None, report_phase: tf.Tensor | None = None) -> bool:
        """Check the call's arguments (one-line errors, as the torch ``forward``); True when the phases are
        predicted from ``phase_history`` (``phase_predict`` and ``cophase``)."""
        cfg, where = self.selector, f"AttentionSelectorLayer {self.name!r}"
        for name, t in (("rsrp_db", rsrp_db), ("phase", phase), ("phase_history", phase_history),
                        ("report_phase", report_phase)):
            if t is not None and (t.dtype.is_complex or t.dtype == tf.bool or t.dtype == tf.string):
                raise TypeError(f"{where}: argument '{name}' has dtype {t.dtype.name}; expected a real float tensor")
        shape = rsrp_db.shape
        if shape.rank is None or shape.rank < 2 or shape[-1] not in (None, self.num_beams) \
                or (shape[-2] is not None and shape[-2] < cfg["history"]):
            raise ValueError(f"{where}: argument 'rsrp_db' has shape {shape}; expected [..., L>={cfg['history']}, "
                             f"M={self.num_beams}] (reports in dB, oldest first)")
        if phase_lead is not None and (isinstance(phase_lead, bool) or not isinstance(phase_lead, (int, float))
                                       or not math.isfinite(phase_lead)):
            raise ValueError(f"{where}: argument 'phase_lead' = {phase_lead!r}; expected a finite number (sample "
                             "spacings of 'phase_history')")
        if self._csi_keys:
            if report_phase is None:
                raise ValueError(f"{where}: 'csi_keys' is on but no 'report_phase' [..., L, M={self.num_beams}] was "
                                 "given; measure with 'with_phase = true'")
            if report_phase.shape.rank != shape.rank or not report_phase.shape.is_compatible_with(shape):
                raise ValueError(f"{where}: argument 'report_phase' has shape {report_phase.shape}; expected the "
                                 f"shape of 'rsrp_db', {shape}")
        if cfg.get("phase_predict") and cfg["cophase"]:
            if phase_history is None:
                raise ValueError(f"{where}: 'phase_predict' is on but no 'phase_history' [..., T, "
                                 f"M={self.num_beams}] was given")
            hist = phase_history.shape
            expected = shape[:-2].concatenate([None, self.num_beams])
            if hist.rank != expected.rank or not hist.is_compatible_with(expected) \
                    or (hist[-2] is not None and hist[-2] < 1):
                raise ValueError(f"{where}: argument 'phase_history' has shape {hist}; expected {shape[:-2]} + "
                                 f"[T>=1, M={self.num_beams}] (phases in rad, oldest first)")
            return True  # the predicted phases replace 'phase' (not read)
        if cfg["cophase"] and phase is None:
            raise ValueError(f"{where}: 'cophase' is on but no 'phase' was given; expected phases [..., "
                             f"M={self.num_beams}] (rad)")
        if phase is not None:
            expected = shape[:-2].concatenate([self.num_beams])
            if phase.shape.rank != expected.rank or not phase.shape.is_compatible_with(expected):
                raise ValueError(f"{where}: argument 'phase' has shape {phase.shape}; expected {expected} "
                                 "(the latest phase of each beam, rad)")
        return False

    def call(self, rsrp_db: tf.Tensor, phase: tf.Tensor | None = None, phase_history: tf.Tensor | None = None,
             phase_lead: float | None = None, report_phase: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        cfg = self.selector
        rsrp_db = tf.convert_to_tensor(rsrp_db)
        phase = None if phase is None else tf.convert_to_tensor(phase)
        phase_history = None if phase_history is None else tf.convert_to_tensor(phase_history)
        report_phase = None if report_phase is None or not self._csi_keys else tf.convert_to_tensor(report_phase)
        predict = self._check_inputs(rsrp_db, phase, phase_history, phase_lead, report_phase)
        m = self.num_beams
        batch = tf.shape(rsrp_db)[:-2]  # the leading dims [...]
        rsrp = tf.reshape(tf.cast(rsrp_db, tf.float32), tf.concat([[-1], tf.shape(rsrp_db)[-2:]], 0))  # [S, L', M]
        rsrp = rsrp[:, -cfg["history"]:, :]  # [S, L, M]
        report = None
        if report_phase is not None:
            # Shapes unknown until run time (tf.function, Keras inputs): the same check, in the graph.
            tf.debugging.assert_equal(tf.shape(report_phase), tf.shape(rsrp_db), message=(
                f"AttentionSelectorLayer {self.name!r}: argument 'report_phase' must have the shape of 'rsrp_db'"))
            report = tf.reshape(tf.cast(report_phase, tf.float32),
                                tf.concat([[-1], tf.shape(report_phase)[-2:]], 0))[:, -cfg["history"]:, :]  # [S, L, M]
        if predict:
            hist = tf.reshape(tf.cast(phase_history, tf.float32), tf.concat([[-1], tf.shape(phase_history)[-2:]], 0))
            lead = cfg["phase_lead"] if phase_lead is None else float(phase_lead)
            phase = predict_phase(hist, lead)  # [S, M] at the use interval
        elif phase is not None:
            phase = tf.reshape(tf.cast(phase, tf.float32), [-1, m])  # [S, M]
        measured = tf.constant(self._measured_np)  # [M] bool

        transformer = cfg.get("arch") == "transformer"
        if cfg["learned"]:
            k = self._keys(rsrp, measured, report)  # [S, M, d]
            for block in range(cfg["layers"] if transformer else 0):
                k = self._self_attention(k, block)  # [S, M, d]: each beam's key knows the measured beams
            scale = 1.0 / math.sqrt(cfg["d_model"]) / cfg["temperature"]
            if transformer and cfg["query"] == "context":
                q = self._query(k, rsrp, measured) * tf.constant(scale, tf.float32)  # [S, d]
                scores = tf.einsum("smd,sd->sm", k, q) + self.beam_bias  # [S, M]
            else:
                q = self.query * tf.constant(scale, tf.float32)  # [d]
                scores = tf.linalg.matvec(k, q) + self.beam_bias  # [S, M]
        else:
            # Fixed goal "more RSRP is better": score = latest RSRP (dB) / temperature (dB), Set B only.
            scores = rsrp[:, -1, :] * tf.constant(1.0 / cfg["temperature"], tf.float32)  # [S, M]
            scores = tf.where(measured, scores, _NEG_INF)
        normalize = NORMALIZERS[cfg["normalizer"]]
        if cfg["mode"] == "topk":
            top_s, top_i = tf.math.top_k(scores, k=cfg["topk"])  # [S, topk] each, largest first
            top_w = normalize(top_s)  # [S, topk], normalised over the kept beams only
            weights = tf.reduce_sum(tf.one_hot(top_i, m, dtype=top_w.dtype) * top_w[..., None], axis=-2)  # [S, M]
        else:
            weights = normalize(scores)  # [S, M]
        index = tf.argmax(weights, axis=-1, output_type=tf.int64)  # [S]

        if cfg["mode"] == "hard":
            # The codebook beam of the largest weight; a common phase changes no gain: no co-phasing.
            b_re = tf.gather(self.codebook_real, index)  # [S, N]
            b_im = tf.gather(self.codebook_imag, index)
        else:
            v_re, v_im = self._values(phase if cfg["cophase"] else None, measured)  # [M, N] or [S, M, N]
            if cfg["cophase"]:
                b_re = tf.einsum("sm,smn->sn", weights, v_re)  # [S, N]
                b_im = tf.einsum("sm,smn->sn", weights, v_im)
            else:
                b_re = tf.matmul(weights, v_re)  # [S, N]
                b_im = tf.matmul(weights, v_im)
        norm = tf.maximum(tf.sqrt(tf.reduce_sum(b_re**2 + b_im**2, axis=-1, keepdims=True)), 1e-12)  # [S, 1]
        beams = tf.complex(b_re / norm, b_im / norm)  # [S, N] complex64, unit norm

        safe = tf.where(weights > 0, weights, tf.ones_like(weights))
        entropy = -tf.reduce_sum(weights * tf.math.log(safe), axis=-1)  # [S] nats (0 log 0 = 0)
        active = tf.reduce_sum(tf.cast(weights > 0, tf.int64), axis=-1)  # [S]
        out_shape = tf.concat([batch, [-1]], 0)
        return {"beams": tf.reshape(beams, out_shape),  # [..., N]
                "weights": tf.reshape(weights, out_shape),  # [..., M]
                "index": tf.reshape(index, batch),  # [...]
                "entropy": tf.reshape(entropy, batch),
                "active": tf.reshape(active, batch)}

