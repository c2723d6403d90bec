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
- **scores**: ``(q · k_i) / sqrt(d) / temperature + b_i`` (learned query ``q``, per-beam
  bias ``b``); the untrained selector scores a measured beam by its latest RSRP in dB
  divided by the temperature (dB) and excludes unmeasured beams.
- **weights**: softmax, sparsemax or 1.5-entmax over the ``M`` beams; ``topk`` mode keeps
  the ``topk`` largest scores and normalises over those only.
- **beams**: ``soft``/``topk``: the unit-norm ``Σ α_i v_i`` of the codebook beams ``v_i``
  (co-phased, ``v_i e^{-j φ_i}``, with the reported phases of measured beams when
  ``cophase``); ``hard``: the codebook beam of the largest weight.

Get a layer with :meth:`AttentionSelectorLayer.from_file` from the file that
``beamattn export --format keras CHECKPOINT --out FILE`` writes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from .normalizers import NORMALIZERS
from .selector_file import (SelectorFileError, check_grid, check_selector_config, check_set_b, kernel_radii,
                            read_selector_file, weight_shapes)

__all__ = ["AttentionSelectorLayer", "relative_rsrp_features"]

_FLOOR_DB = -40.0  # reports this far below the best beam carry no information (as in the torch selector)
_NEG_INF = float("-inf")


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


@tf.keras.utils.register_keras_serializable(package="beamattn")
class AttentionSelectorLayer(tf.keras.layers.Layer):
    """Attention over the codebook's beams (see the module docstring).

    Args:
        selector: the selector config, a dict with the fields of ``SelectorConfig``
            (normalizer, mode, topk, temperature, history, neighbours, d_model, cophase, learned; and grid
            ``[M_v, M_h]`` for a UPA grid of beams, whose keys are a circular 2-D convolution).
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
        phase: ``[..., M]`` latest reported phases in rad (needed when ``cophase``; Set B entries read).

    Returns:
        A dict: ``beams`` ``[..., N]`` complex64 with unit norm; ``weights`` ``[..., M]`` float32
        (sum 1, exact zeros for sparsemax/entmax/top-k); ``index`` ``[...]`` int64, the beam of the
        largest weight; ``entropy`` ``[...]`` float32 in nats; ``active`` ``[...]`` int64, the
        number of non-zero weights.

    Weights (Keras variables): ``codebook_real``/``codebook_imag`` ``[M, N]`` (not trainable) and,
    when learned, ``key_conv_kernel`` ``[2n+1, L+1, d]`` (``tf.nn.conv1d`` layout; with a grid
    ``[kv, kh, L+1, d]``, ``tf.nn.conv2d`` layout), ``key_conv_bias``
    ``[d]``, ``query`` ``[d]`` and ``beam_bias`` ``[M]`` (trainable).
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
            d, c = cfg["d_model"], cfg["history"] + 1
            n_v, n_h = kernel_radii(cfg)
            # [2n+1, L+1, d] (tf.nn.conv1d), or [kv, kh, L+1, d] (tf.nn.conv2d) with a grid of beams.
            kernel = (2 * n_h + 1, c, d) if cfg.get("grid") is None else (2 * n_v + 1, 2 * n_h + 1, c, d)
            self.key_conv_kernel = self.add_weight(name="key_conv_kernel", shape=kernel, initializer="zeros",
                                                   dtype="float32")
            self.key_conv_bias = self.add_weight(name="key_conv_bias", shape=(d,), initializer="zeros",
                                                 dtype="float32")
            self.query = self.add_weight(name="query", shape=(d,), initializer="zeros", dtype="float32")
            self.beam_bias = self.add_weight(name="beam_bias", shape=(m,), initializer="zeros", dtype="float32")
        if arrays is not None:
            self._assign(arrays, where)

    def _assign(self, arrays: dict[str, np.ndarray], where: str) -> None:
        """Set the variables from a selector file's arrays (torch layouts)."""
        codebook = np.asarray(arrays["codebook"])
        if codebook.shape != (self.num_beams, self.num_ant):
            raise ValueError(f"{where}: codebook has shape {codebook.shape}; expected "
                             f"[M, N] = ({self.num_beams}, {self.num_ant})")
        self.codebook_real.assign(codebook.real.astype(np.float32))
        self.codebook_imag.assign(codebook.imag.astype(np.float32))
        expected = weight_shapes(self.selector, self.num_beams)
        if set(arrays) - {"codebook"} != set(expected):
            raise ValueError(f"{where}: weights {sorted(set(arrays) - {'codebook'})} do not match the config; "
                             f"expected {sorted(expected)}")
        if not expected:
            return
        conv = np.asarray(arrays["key_conv_weight"], dtype=np.float32)  # [d, L+1, K] or [d, L+1, kv, kh] (torch)
        if conv.ndim == 3:
            self.key_conv_kernel.assign(np.transpose(conv, (2, 1, 0)))  # [K, L+1, d] (tf.nn.conv1d)
        else:
            self.key_conv_kernel.assign(np.transpose(conv, (2, 3, 1, 0)))  # [kv, kh, L+1, d] (tf.nn.conv2d)
        self.key_conv_bias.assign(np.asarray(arrays["key_conv_bias"], dtype=np.float32))
        self.query.assign(np.asarray(arrays["query"], dtype=np.float32))
        self.beam_bias.assign(np.asarray(arrays["beam_bias"], dtype=np.float32))

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

    def _keys(self, rsrp_db: tf.Tensor, measured: tf.Tensor) -> tf.Tensor:
        """Keys ``[S, M, d]`` from reports ``rsrp_db [S, L, M]`` (learned selector)."""
        cfg = self.selector
        rel = relative_rsrp_features(rsrp_db, measured)  # [S, L, M]
        flag = tf.broadcast_to(tf.cast(measured, rel.dtype), tf.shape(rel[:, :1, :]))  # [S, 1, M]
        feat = tf.transpose(tf.concat([rel, flag], axis=1), (0, 2, 1))  # [S, M, L+1] (channels last)
        n, m = cfg["neighbours"], self.num_beams
        grid = cfg.get("grid")
        if grid is None:
            wrap = np.arange(-n, m + n) % m  # circular padding along the codebook index: [M + 2n]
            padded = tf.gather(feat, wrap, axis=1)  # [S, M + 2n, L+1]
            k = tf.nn.conv1d(padded, self.key_conv_kernel, stride=1, padding="VALID")  # [S, M, d]
        else:
            # A UPA grid of beams, m = m_v·M_h + m_h: circular padding on both grid axes, then a 2-D conv.
            m_v, m_h = grid
            n_v, n_h = kernel_radii(cfg)
            img = tf.reshape(feat, [-1, m_v, m_h, cfg["history"] + 1])  # [S, Mv, Mh, L+1]
            img = tf.gather(img, np.arange(-n_v, m_v + n_v) % m_v, axis=1)  # [S, Mv + 2n_v, Mh, L+1]
            img = tf.gather(img, np.arange(-n_h, m_h + n_h) % m_h, axis=2)  # [S, Mv + 2n_v, Mh + 2n_h, L+1]
            k = tf.nn.conv2d(img, self.key_conv_kernel, strides=1, padding="VALID")  # [S, Mv, Mh, d]
            k = tf.reshape(k, [-1, m, cfg["d_model"]])  # [S, M, d] in beam order
        return tf.nn.gelu(k + self.key_conv_bias, approximate=False)  # exact (erf) GELU, as torch.nn.GELU()

    def _values(self, phase: tf.Tensor | None, measured: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Real and imaginary parts of the values: ``[M, N]``, or ``[S, M, N]`` co-phased by ``-phase [S, M]``."""
        v_re, v_im = self.codebook_real, self.codebook_imag  # [M, N]
        if phase is None:
            return tf.convert_to_tensor(v_re), tf.convert_to_tensor(v_im)
        # e^{-j φ} for measured beams; 1 for unmeasured beams (no phase report).
        rot_re = tf.where(measured, tf.cos(-phase), tf.ones_like(phase))[..., None]  # [S, M, 1]
        rot_im = tf.where(measured, tf.sin(-phase), tf.zeros_like(phase))[..., None]
        return v_re * rot_re - v_im * rot_im, v_re * rot_im + v_im * rot_re  # [S, M, N] each

    def _check_inputs(self, rsrp_db: tf.Tensor, phase: tf.Tensor | None) -> None:
        cfg, where = self.selector, f"AttentionSelectorLayer {self.name!r}"
        for name, t in (("rsrp_db", rsrp_db), ("phase", phase)):
            if t is not None and (t.dtype.is_complex or t.dtype == tf.bool or t.dtype == tf.string):
                raise TypeError(f"{where}: argument '{name}' has dtype {t.dtype.name}; expected a real float tensor")
        shape = rsrp_db.shape
        if shape.rank is None or shape.rank < 2 or shape[-1] not in (None, self.num_beams) \
                or (shape[-2] is not None and shape[-2] < cfg["history"]):
            raise ValueError(f"{where}: argument 'rsrp_db' has shape {shape}; expected [..., L>={cfg['history']}, "
                             f"M={self.num_beams}] (reports in dB, oldest first)")
        if cfg["cophase"] and phase is None:
            raise ValueError(f"{where}: 'cophase' is on but no 'phase' was given; expected phases [..., "
                             f"M={self.num_beams}] (rad)")
        if phase is not None:
            expected = shape[:-2].concatenate([self.num_beams])
            if phase.shape.rank != expected.rank or not phase.shape.is_compatible_with(expected):
                raise ValueError(f"{where}: argument 'phase' has shape {phase.shape}; expected {expected} "
                                 "(the latest phase of each beam, rad)")

    def call(self, rsrp_db: tf.Tensor, phase: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        cfg = self.selector
        rsrp_db = tf.convert_to_tensor(rsrp_db)
        phase = None if phase is None else tf.convert_to_tensor(phase)
        self._check_inputs(rsrp_db, phase)
        m = self.num_beams
        batch = tf.shape(rsrp_db)[:-2]  # the leading dims [...]
        rsrp = tf.reshape(tf.cast(rsrp_db, tf.float32), tf.concat([[-1], tf.shape(rsrp_db)[-2:]], 0))  # [S, L', M]
        rsrp = rsrp[:, -cfg["history"]:, :]  # [S, L, M]
        if phase is not None:
            phase = tf.reshape(tf.cast(phase, tf.float32), [-1, m])  # [S, M]
        measured = tf.constant(self._measured_np)  # [M] bool

        if cfg["learned"]:
            k = self._keys(rsrp, measured)  # [S, M, d]
            scale = 1.0 / math.sqrt(cfg["d_model"]) / cfg["temperature"]
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

