"""Closed-form checks of ``used_beam`` and ``decision_metrics`` (wireless/metrics.py) on hand-made inputs.

Written from the mutation run (scripts/mutation.py, group ``metrics``): these two functions were only
exercised end to end by the runner tests, so a wrong KPI formula could pass. Here every KPI is compared
with its definition (design.md §4) on an episode whose numbers are chosen by hand: a DFT codebook, a
diagonal covariance per decision, known beams and weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor

from beamattn.wireless.arrays import AntennaArray
from beamattn.wireless.codebooks import Codebook, dft_codebook
from beamattn.wireless.metrics import SAME_BEAM_TOL, SUMMARY_KEYS, decision_metrics, summarize, used_beam
from beamattn.wireless.policies import Decision

N = 4  # antennas; the DFT codebook has M = N beams (no oversampling), an orthonormal basis


@dataclass
class _Ep:
    """The part of ``Episode`` that the metrics read (a real Episode needs a whole channel simulation)."""

    codebook: Codebook
    gain_use: Tensor  # [B, D, M]
    cov_use: Tensor  # [B, D, N, N]
    mrt_gain: Tensor  # [B, D]
    snr_db: float

    @property
    def num_beams(self) -> int:
        return self.codebook.num_beams

    def gain(self, w: Tensor) -> Tensor:  # [B, D, N] -> [B, D], wᴴ R w as Episode.gain
        return torch.einsum("bdm,bdmn,bdn->bd", w.conj(), self.cov_use, w).real


def _episode(snr_db: float = 3.0) -> _Ep:
    """One drop, three decisions. R = V diag(p) Vᴴ in the DFT basis V, so beam m has gain p_m exactly."""
    cb = dft_codebook(AntennaArray(1, N), dtype=torch.complex128)
    v = cb.beams  # [M, N], rows orthonormal
    p = torch.tensor([[[0.5, 2.0, 0.1, 1.0], [3.0, 0.2, 0.2, 0.4], [0.3, 0.3, 4.0, 0.1]]], dtype=torch.float64)
    # R = Σ_m p_m v_m v_mᴴ, so the gain of beam w is wᴴ R w = Σ_m p_m |v_mᴴ w|², and v_kᴴ R v_k = p_k.
    cov = torch.einsum("bdm,mi,mj->bdij", p.to(torch.complex128), v, v.conj())  # [1, 3, N, N]
    return _Ep(codebook=cb, gain_use=p, cov_use=cov, mrt_gain=p.sum(-1), snr_db=snr_db)


def _dec(beam_ids: list[int], index: list[int] | None = None, **kw) -> Decision:
    ep_v = dft_codebook(AntennaArray(1, N), dtype=torch.complex128).beams
    beams = ep_v[torch.tensor(beam_ids)].unsqueeze(0)  # [1, D, N]
    idx = torch.tensor([beam_ids if index is None else index])  # [1, D]
    measured = kw.pop("measured", torch.full((1, len(beam_ids)), 2.0))
    return Decision(beams=beams, index=idx, measured=measured, **kw)


def _db(x: float) -> float:
    return 10 * math.log10(x)


def test_every_kpi_equals_its_definition_for_codebook_beams():
    ep = _episode(snr_db=3.0)
    dec = _dec([1, 1, 0])  # genie picks are 1, 0, 2: right, wrong (but no switch), wrong (switch)
    m = decision_metrics(ep, dec, outage_db=4.0)
    rho = 10 ** 0.3
    gains = [2.0, 0.2, 0.3]
    genie = [2.0, 3.0, 4.0]
    mrt = [3.6, 3.8, 4.7]
    for d in range(3):
        assert m.snr_db[0, d].item() == pytest.approx(_db(rho * gains[d]), abs=1e-9)
        assert m.genie_db[0, d].item() == pytest.approx(_db(rho * genie[d]), abs=1e-9)
        assert m.mrt_db[0, d].item() == pytest.approx(_db(rho * mrt[d]), abs=1e-9)
        assert m.loss_db[0, d].item() == pytest.approx(_db(genie[d] / gains[d]), abs=1e-9)
        assert m.gap_mrt_db[0, d].item() == pytest.approx(_db(mrt[d] / gains[d]), abs=1e-9)
        assert m.se[0, d].item() == pytest.approx(math.log2(1 + rho * gains[d]), abs=1e-9)
    assert m.top1.tolist() == [[1.0, 0.0, 0.0]]
    assert m.topk.tolist() == [[1.0, 0.0, 0.0]]  # no ranking: Top-K is Top-1
    assert m.within_1db.tolist() == [[1.0, 0.0, 0.0]]
    # SNRs: 3 + 3.01 = 6.0 dB (not in outage at 4 dB), 3 - 6.99 dB and 3 - 5.23 dB (in outage)
    assert m.outage.tolist() == [[0.0, 1.0, 1.0]]
    assert m.switch.tolist() == [[0.0, 0.0, 1.0]]
    assert m.index.tolist() == [[1, 1, 0]]
    assert m.overhead.tolist() == [[2.0, 2.0, 2.0]]
    assert m.overhead_saving.tolist() == [[0.5, 0.5, 0.5]]  # 1 - 2 measured / 4 beams
    assert m.active.tolist() == [[1.0, 1.0, 1.0]] and m.entropy.tolist() == [[0.0, 0.0, 0.0]]


def test_within_1db_and_outage_at_their_thresholds():
    # Losses of 0.9 dB and 1.1 dB fall on either side of "within 1 dB"; an SNR exactly at the outage
    # threshold is not an outage (outage is SNR *below* it).
    ep = _episode(snr_db=0.0)
    dec = _dec([1, 0, 2], gain=torch.tensor([[2.0 / 10 ** 0.09, 1.0, 4.0 / 10 ** 0.11]], dtype=torch.float64))
    m = decision_metrics(ep, dec, outage_db=0.0)
    assert m.loss_db[0].tolist() == pytest.approx([0.9, _db(3.0), 1.1], abs=1e-9)
    assert m.within_1db.tolist() == [[1.0, 0.0, 0.0]]
    assert m.snr_db[0, 1].item() == 0.0 and m.outage[0, 1].item() == 0.0  # gain 1 at ρ = 1: 0 dB, not < 0 dB
    assert m.outage[0, 0].item() == 0.0 and m.outage[0, 2].item() == 0.0


def test_decision_gain_overrides_the_covariance_gain():
    # MRT reports its per-instant bound in `gain`; the metrics must use it, not wᴴRw of its beams.
    ep = _episode(snr_db=0.0)
    dec = _dec([2, 2, 2], index=[-1, -1, -1], gain=ep.mrt_gain.clone())
    m = decision_metrics(ep, dec)
    assert torch.allclose(m.snr_db, m.mrt_db) and torch.allclose(m.gap_mrt_db, torch.zeros(1, 3, dtype=m.snr_db.dtype))


def test_topk_uses_the_ranking_and_weights_give_active_count_and_entropy():
    ep = _episode(snr_db=0.0)
    ranking = torch.tensor([[[0, 1], [3, 2], [2, 0]]])  # genie 1, 0, 2: in, out, in
    w = torch.tensor([[[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]]], dtype=torch.float64)
    dec = _dec([0, 3, 2], ranking=ranking, weights=w)
    m = decision_metrics(ep, dec)
    assert m.topk.tolist() == [[1.0, 0.0, 1.0]]
    assert m.top1.tolist() == [[0.0, 0.0, 1.0]]
    assert m.active.tolist() == [[2.0, 1.0, 4.0]]
    assert m.entropy[0].tolist() == pytest.approx([math.log(2), 0.0, math.log(4)], abs=1e-6)


def test_used_beam_keeps_named_indices_and_recognises_a_codebook_beam_up_to_a_phase():
    ep = _episode()
    v = ep.codebook.beams  # [M, N]
    phase = complex(math.cos(0.7), math.sin(0.7))
    # decision 0: index 3 named (its beams are beam 1: the name wins); 1: beam 2 times a phase, index -1;
    # 2: an equal combination of beams 0 and 1 (|v_mᴴ w|² = 1/2 for both): no codebook beam.
    beams = torch.stack([v[1], phase * v[2], (v[0] + v[1]) / math.sqrt(2)]).unsqueeze(0)  # [1, 3, N]
    dec = Decision(beams=beams, index=torch.tensor([[3, -1, -1]]), measured=torch.ones(1, 3))
    assert used_beam(ep, dec).tolist() == [[3, 2, -1]]
    # With every index named, nothing is matched.
    named = Decision(beams=beams, index=torch.tensor([[0, 1, 2]]), measured=torch.ones(1, 3))
    assert used_beam(ep, named).tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_used_beam_tolerance_is_sametol_on_the_squared_overlap(dtype):
    # w = sqrt(1-ε) v_1 + sqrt(ε) v_3 has |v_1ᴴ w|² = 1 - ε exactly (orthonormal DFT beams).
    ep = _episode()
    v = ep.codebook.beams
    ws = [math.sqrt(1 - e) * v[1] + math.sqrt(e) * v[3] for e in (SAME_BEAM_TOL / 4, 4 * SAME_BEAM_TOL)]
    dec = Decision(beams=torch.stack(ws).unsqueeze(0).to(dtype), index=torch.tensor([[-1, -1]]),
                   measured=torch.ones(1, 2))
    assert used_beam(ep, dec).tolist() == [[1, -1]]


def test_used_beam_counts_a_one_beam_combination_for_top1_and_switches():
    # A soft policy whose weights put everything on one beam reports index -1 with that beam: it is that beam.
    ep = _episode()
    v = ep.codebook.beams
    beams = torch.stack([v[1], -v[0], 1j * v[0]]).unsqueeze(0)  # [1, 3, N]
    dec = Decision(beams=beams, index=torch.full((1, 3), -1), measured=torch.ones(1, 3))
    m = decision_metrics(ep, dec)
    assert m.index.tolist() == [[1, 0, 0]]
    assert m.top1.tolist() == [[1.0, 1.0, 0.0]]
    assert m.switch.tolist() == [[0.0, 1.0, 0.0]]


def test_summarize_reports_every_key_with_its_mean_and_the_loss_percentiles():
    rng = np.random.default_rng(5)
    per_drop = {k: rng.normal(size=12) for k in SUMMARY_KEYS}
    loss = rng.exponential(size=200)
    out = summarize(per_drop, loss, seed=1)
    for k in SUMMARY_KEYS:
        assert out[k]["mean"] == pytest.approx(float(per_drop[k].mean()), rel=1e-12)
        lo, hi = out[k]["ci95"]
        assert lo < out[k]["mean"] < hi
    assert out["loss_db_p95"] == pytest.approx(float(np.quantile(loss, 0.95)), rel=1e-12)
    assert out["loss_db_median"] == pytest.approx(float(np.median(loss)), rel=1e-12)
    empty = summarize(per_drop, np.zeros(0))
    assert empty["loss_db_p95"] is None and empty["loss_db_median"] is None


def test_a_loss_of_exactly_1db_is_within_1db():
    # "Accuracy within a 1 dB margin" includes the margin: genie gain 10 (10 dB), used gain 10^0.9 (9 dB).
    ep = _episode(snr_db=0.0)
    ep.gain_use[0, 0] = torch.tensor([10.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    dec = _dec([0, 0, 0], gain=torch.tensor([[10 ** 0.9, 1.0, 1.0]], dtype=torch.float64))
    m = decision_metrics(ep, dec)
    assert m.loss_db[0, 0].item() == 1.0 and m.within_1db[0, 0].item() == 1.0


def test_summarize_intervals_are_the_bootstrap_of_the_given_seed():
    from beamattn.wireless.metrics import bootstrap_ci

    rng = np.random.default_rng(9)
    per_drop = {k: rng.normal(size=10) for k in SUMMARY_KEYS}
    a, b = summarize(per_drop, np.zeros(0), seed=7), summarize(per_drop, np.zeros(0), seed=7)
    for k in SUMMARY_KEYS:
        assert a[k] == b[k]
        assert a[k]["ci95"] == list(bootstrap_ci(per_drop[k], seed=7)[1:])
    assert summarize(per_drop, np.zeros(0), seed=8)["snr_db"]["ci95"] != a["snr_db"]["ci95"]


def test_decision_metrics_to_moves_every_field():
    ep = _episode()
    m = decision_metrics(ep, _dec([1, 1, 0]))
    moved = m.to("meta")
    assert all(getattr(moved, f).device.type == "meta" for f in vars(m))
    back = m.to("cpu")
    assert all(torch.equal(getattr(back, f), getattr(m, f)) for f in vars(m))
