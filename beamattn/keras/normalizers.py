"""Softmax, sparsemax and 1.5-entmax over the last axis, in plain TensorFlow ops.

The TensorFlow counterparts of :mod:`beamattn.core.sparsemax` (which is torch):
``sparsemax(z)`` is the Euclidean projection of ``z`` onto the probability
simplex, ``p_i = max(z_i - tau, 0)`` with ``sum_i p_i = 1``, so scores below the
threshold ``tau`` get an exact zero; 1.5-entmax sits between softmax and
sparsemax. Both find their threshold exactly by sorting each row (here in TF;
the torch sparsemax uses Newton steps that end at the same threshold). ``-inf``
scores mark excluded entries and get weight 0; a row that is all ``-inf`` gives
zeros. Only ``tf.*`` ops are used (no ``keras.ops``), so this runs with Keras 2
(TF <= 2.15) and Keras 3 alike.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["softmax", "sparsemax", "entmax15", "NORMALIZERS"]


def _shift_by_max(x: tf.Tensor) -> tf.Tensor:
    """``x - max(x)`` over the last axis; rows that are all ``-inf`` stay ``-inf`` (not NaN)."""
    x_max = tf.reduce_max(x, axis=-1, keepdims=True)  # [..., 1]
    x_max = tf.where(tf.math.is_inf(x_max) & (x_max < 0), tf.zeros_like(x_max), x_max)
    return x - x_max


def _at_support(values: tf.Tensor, support: tf.Tensor) -> tf.Tensor:
    """``values[..., support - 1]`` for a per-row ``support [..., 1]`` (1-based), as ``[..., 1]``."""
    n = tf.shape(values)[-1]
    pick = tf.equal(tf.range(1, n + 1), support)  # [..., n], one True per row
    return tf.reduce_sum(tf.where(pick, values, tf.zeros_like(values)), axis=-1, keepdims=True)


def softmax(x: tf.Tensor) -> tf.Tensor:
    """Softmax over the last axis (``tf.nn.softmax``)."""
    return tf.nn.softmax(x, axis=-1)


def sparsemax(x: tf.Tensor) -> tf.Tensor:
    """Sparsemax over the last axis: exact zeros off the support.

    Args:
        x: real scores ``[..., n]``; ``-inf`` marks excluded entries.

    Returns:
        ``[..., n]`` non-negative weights summing to 1 per row (all zeros for a row of ``-inf``).
    """
    z = _shift_by_max(x)  # [..., n], max 0
    z_srt = tf.sort(z, axis=-1, direction="DESCENDING")  # [..., n]
    rho = tf.cast(tf.range(1, tf.shape(z)[-1] + 1), z.dtype)  # [n]: 1, 2, ..., n
    finite = tf.where(tf.math.is_inf(z_srt), tf.zeros_like(z_srt), z_srt)  # -inf entries never enter the support
    z_cumsum = tf.cumsum(finite, axis=-1) - 1  # [..., n]
    support = tf.reduce_sum(tf.cast(rho * z_srt > z_cumsum, tf.int32), axis=-1, keepdims=True)  # [..., 1]
    support = tf.maximum(support, 1)
    tau = _at_support(z_cumsum, support) / tf.cast(support, z.dtype)  # [..., 1]
    return tf.maximum(z - tau, 0)  # [..., n]


def entmax15(x: tf.Tensor) -> tf.Tensor:
    """1.5-entmax over the last axis (Peters, Niculae & Martins, 2019), exact sort-based threshold.

    Args:
        x: real scores ``[..., n]``; ``-inf`` marks excluded entries.

    Returns:
        ``[..., n]`` non-negative weights summing to 1 per row (all zeros for a row of ``-inf``).
    """
    x_max = tf.reduce_max(x, axis=-1, keepdims=True)  # [..., 1]
    all_masked = tf.math.is_inf(x_max) & (x_max < 0)  # [..., 1]
    # Entries below max - 1 are always outside the support; clamping keeps -inf out of the sums.
    z = tf.maximum(_shift_by_max(x) / 2, -2.0)  # [..., n]
    z_srt = tf.sort(z, axis=-1, direction="DESCENDING")  # [..., n]
    rho = tf.cast(tf.range(1, tf.shape(z)[-1] + 1), z.dtype)  # [n]
    mean = tf.cumsum(z_srt, axis=-1) / rho  # [..., n]
    mean_sq = tf.cumsum(z_srt**2, axis=-1) / rho
    ss = rho * (mean_sq - mean**2)
    delta = tf.maximum((1 - ss) / rho, 0)
    tau = mean - tf.sqrt(delta)  # [..., n] threshold if the support were the top rho entries
    support = tf.reduce_sum(tf.cast(tau <= z_srt, tf.int32), axis=-1, keepdims=True)  # [..., 1], >= 1
    tau_star = _at_support(tau, support)  # [..., 1]
    p = tf.maximum(z - tau_star, 0) ** 2  # [..., n]
    return tf.where(all_masked, tf.zeros_like(p), p)


NORMALIZERS = {"softmax": softmax, "sparsemax": sparsemax, "entmax15": entmax15}
