"""Beam-management KPIs (3GPP TR 38.843 style) with bootstrap confidence intervals.

Per decision: received SNR (dB) over the use interval, SNR loss to the genie best
beam, gap to MRT, spectral efficiency log2(1 + SNR), outage (SNR below a
threshold), Top-1 / Top-K accuracy (the genie best beam is the policy's pick /
among its K best; a beam reported as index -1 that is a codebook beam up to a phase,
such as a uniform combination of one beam, counts as that beam: :func:`used_beam`),
accuracy within 1 dB, beam switches, overhead (beams measured
per decision and 1 − measured/M), active beams (non-zero weights).

Aggregation: every KPI is averaged per drop, then over drops; the 95% interval
is a percentile bootstrap over drops (drops are the independent units).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from ..core.diagnostics import attention_entropy
from .measurement import Episode
from .policies import Decision

__all__ = ["DecisionMetrics", "decision_metrics", "used_beam", "summarize", "bootstrap_ci", "KPI_COLUMNS"]

# (key, header, format) of the table printed by `beamattn run`.
KPI_COLUMNS = (
    ("snr_db", "SNR dB", "{:.2f}"),
    ("loss_db", "loss to genie dB", "{:.2f}"),
    ("gap_mrt_db", "gap to MRT dB", "{:.2f}"),
    ("se", "SE b/s/Hz", "{:.2f}"),
    ("top1", "Top-1", "{:.3f}"),
    ("within_1db", "within 1 dB", "{:.3f}"),
    ("outage", "outage", "{:.3f}"),
    ("overhead", "beams meas.", "{:.1f}"),
    ("active", "active beams", "{:.2f}"),
)


@dataclass
class DecisionMetrics:
    """Per-decision values, each ``[B, D]`` (float)."""

    snr_db: Tensor
    genie_db: Tensor
    mrt_db: Tensor
    loss_db: Tensor
    gap_mrt_db: Tensor
    se: Tensor
    top1: Tensor
    topk: Tensor
    within_1db: Tensor
    outage: Tensor
    switch: Tensor
    overhead: Tensor
    overhead_saving: Tensor
    active: Tensor
    entropy: Tensor  # attention entropy of the weights over beams (nats); 0 for single-beam policies
    index: Tensor  # [B, D] long

    def to(self, device: torch.device | str) -> "DecisionMetrics":
        """All fields on ``device`` (``.to("cpu")`` before writing tables; no copy when already there)."""
        return DecisionMetrics(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _db(x: Tensor) -> Tensor:
    return 10 * torch.log10(x.clamp_min(1e-30))


SAME_BEAM_TOL = 1e-4  # a beam w IS codebook beam v when |vᴴw|² >= 1 - SAME_BEAM_TOL (both unit norm)


def used_beam(ep: Episode, dec: Decision) -> Tensor:
    """The codebook beam each decision used, ``[B, D]`` long, -1 when it used none.

    ``dec.index`` where it names a beam. Where it is -1 (MRT, combinations), the beam is still
    codebook beam ``m`` when it is that beam up to a phase, ``|v_mᴴ w|² >= 1 − SAME_BEAM_TOL``
    (within 0.0004 dB): a uniform combination of one beam, MRT on a one-antenna array, or MRT on a
    single path that falls on a DFT beam are that beam, and Top-1 / switches count them as such.
    """
    index = dec.index
    free = index < 0  # [B, D]
    if not bool(free.any()):
        return index
    v = ep.codebook.beams.to(dec.beams.device, dec.beams.dtype)  # [M, N]
    match = torch.einsum("mn,bdn->bdm", v.conj(), dec.beams).abs().square()  # [B, D, M] |v_mᴴ w|²
    best, arg = match.max(-1)  # [B, D]
    return torch.where(free & (best >= 1 - SAME_BEAM_TOL), arg, index)


def decision_metrics(ep: Episode, dec: Decision, outage_db: float = 0.0) -> DecisionMetrics:
    """KPIs of ``dec`` on ``ep``; SNRs include the transmit SNR ``ρ = ep.snr_db``."""
    rho = 10 ** (ep.snr_db / 10)
    gain = dec.gain if dec.gain is not None else ep.gain(dec.beams)  # [B, D]
    snr = rho * gain
    genie_gain, genie_idx = ep.gain_use.max(-1)  # [B, D]
    snr_db = _db(snr)
    genie_db = _db(rho * genie_gain)
    mrt_db = _db(rho * ep.mrt_gain)
    index = used_beam(ep, dec)  # [B, D]
    ranking = dec.ranking if dec.ranking is not None else index.unsqueeze(-1)
    top1 = (index == genie_idx).float()
    topk = (ranking == genie_idx.unsqueeze(-1)).any(-1).float()
    switch = torch.zeros_like(snr)
    switch[:, 1:] = (index[:, 1:] != index[:, :-1]).float()
    if dec.weights is not None:
        active = (dec.weights > 0).sum(-1).float()
        entropy = attention_entropy(dec.weights.float())
    else:
        active = torch.ones_like(snr)
        entropy = torch.zeros_like(snr)
    loss = genie_db - snr_db
    return DecisionMetrics(
        snr_db=snr_db, genie_db=genie_db, mrt_db=mrt_db, loss_db=loss, gap_mrt_db=mrt_db - snr_db,
        se=torch.log2(1 + snr), top1=top1, topk=topk, within_1db=(loss <= 1.0).float(),
        outage=(snr_db < outage_db).float(), switch=switch, overhead=dec.measured.float(),
        overhead_saving=1 - dec.measured.float() / ep.num_beams, active=active, entropy=entropy, index=index)


def bootstrap_ci(per_drop: np.ndarray, num_resamples: int = 1000, seed: int = 0, level: float = 0.95
                 ) -> tuple[float, float, float]:
    """Mean over drops and its percentile-bootstrap interval: (mean, low, high)."""
    per_drop = np.asarray(per_drop, dtype=np.float64)
    mean = float(per_drop.mean())
    if per_drop.size < 2:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, per_drop.size, size=(num_resamples, per_drop.size))
    means = per_drop[idx].mean(axis=1)
    a = (1 - level) / 2
    return mean, float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


SUMMARY_KEYS = ("snr_db", "genie_db", "mrt_db", "loss_db", "gap_mrt_db", "se", "top1", "topk", "within_1db",
                "outage", "switch", "overhead", "overhead_saving", "active", "entropy")


def summarize(per_drop: dict[str, np.ndarray], loss_samples: np.ndarray, seed: int = 0) -> dict:
    """Aggregate per-drop KPI means ``{key: [num_drops]}`` into mean and 95% CI, plus loss percentiles
    (``loss_db_p95``, ``loss_db_median``; None when there are no loss samples: undefined, written as null)."""
    out = {}
    for key in SUMMARY_KEYS:
        mean, lo, hi = bootstrap_ci(per_drop[key], seed=seed)
        out[key] = {"mean": mean, "ci95": [lo, hi]}
    # Percentiles of no samples are undefined: None (null in metrics.json, which is strict JSON), not NaN.
    out["loss_db_p95"] = float(np.quantile(loss_samples, 0.95)) if loss_samples.size else None
    out["loss_db_median"] = float(np.median(loss_samples)) if loss_samples.size else None
    return out
