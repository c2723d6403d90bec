"""Keys that read the complex reports (``SelectorConfig.csi_keys``) and their classical twin ``type1-oversampled-avg``.

Closed forms: for noiseless reports ``y_b = hᵀ v_b`` of an orthogonal Set B (every ``O``-th beam of an
``O``-times oversampled DFT codebook: the DFT basis) the reconstruction ``T y`` is every beam's response
``hᵀ v_m`` exactly; a common phase of one report's values is unobservable, so the features ignore it; with
``alpha = 1`` the averaged Type I policy is the plain one. Plus: the fields' checks, the report accounting, the
checkpoint round trip and the learned baselines reading the same features.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from beamattn.wireless.arrays import ULA
from beamattn.wireless.codebooks import dft_codebook
from beamattn.wireless.policies import make_policy
from beamattn.wireless.runner import episodes
from beamattn.wireless.selector import (AttentionSelector, SelectorConfig, reconstructed_gain_features,
                                        reconstruction_matrix)

sys.path.insert(0, str(Path(__file__).parent))
from wireless_fixtures import tiny_scenario  # noqa: E402

CTX = {"arch": "transformer", "d_model": 8, "heads": 2, "query": "context"}


def _reports(h: torch.Tensor, beams: torch.Tensor, measured: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact reports of channels ``h [S, L, N]``: RSRP (dB) and phase ``[S, L, M]`` (only Set B filled)."""
    y = h @ beams.T  # [S, L, M] hᵀ v_m
    rsrp = torch.where(measured, 10 * torch.log10(y.abs() ** 2), torch.zeros(()))  # unmeasured: never read
    return rsrp, torch.where(measured, torch.angle(y), torch.zeros(()))


@pytest.mark.parametrize("oversampling", [1, 2, 4])
def test_reconstruction_of_an_orthogonal_set_b_is_exact(oversampling):
    g = torch.Generator().manual_seed(0)
    book = dft_codebook(ULA(8), oversampling, dtype=torch.complex128)
    measured = torch.zeros(book.num_beams, dtype=torch.bool)
    measured[::oversampling] = True  # the DFT basis
    h = torch.randn(5, 8, generator=g, dtype=torch.complex128)  # [S, N]
    y = h @ book.beams[measured].T  # [S, J]
    recon = reconstruction_matrix(book.beams, measured)  # [M, J]
    assert torch.allclose(y @ recon.T, h @ book.beams.T, atol=1e-12)  # every beam's hᵀ v_m


def test_reconstruction_is_the_projection_on_set_bs_span_when_set_b_is_smaller():
    # J < N: the minimum-norm channel is the projection of h on the span of conj(V_B) (y = V_B h).
    g = torch.Generator().manual_seed(1)
    book = dft_codebook(ULA(8), 2, dtype=torch.complex128)
    measured = torch.zeros(book.num_beams, dtype=torch.bool)
    measured[[0, 2, 4]] = True
    vb = book.beams[measured]  # [J, N]
    h = torch.randn(4, 8, generator=g, dtype=torch.complex128)
    proj = torch.linalg.pinv(vb) @ vb  # [N, N] projector on the row space of V_B
    h_min = h @ proj.T  # [S, N]
    recon = reconstruction_matrix(book.beams, measured)
    assert torch.allclose((h @ vb.T) @ recon.T, h_min @ book.beams.T, atol=1e-12)


def test_gain_features_are_every_beams_gain_relative_to_the_latest_best():
    g = torch.Generator().manual_seed(2)
    book = dft_codebook(ULA(8), 4, dtype=torch.complex128)
    measured = torch.zeros(book.num_beams, dtype=torch.bool)
    measured[::4] = True
    h = torch.randn(3, 2, 8, generator=g, dtype=torch.complex128)  # [S, L, N]
    rsrp, phase = _reports(h, book.beams, measured)
    feat = reconstructed_gain_features(rsrp, phase, reconstruction_matrix(book.beams, measured), measured)
    gain_db = 10 * torch.log10((h @ book.beams.T).abs() ** 2)  # [S, L, M] the true gains
    want = ((gain_db - gain_db[:, -1:].amax(-1, keepdim=True)) / 10).clamp(-4, 0.5)
    assert torch.allclose(feat, want, atol=1e-10)
    assert torch.allclose(feat[:, -1].amax(-1), torch.zeros(3, dtype=feat.dtype), atol=1e-12)  # latest best = 0


def test_a_common_phase_of_one_report_changes_no_feature():
    # The absolute phase of a report (the UE's oscillator, the path's Doppler) is unobservable: only the
    # phases between the beams of one report carry information.
    g = torch.Generator().manual_seed(3)
    book = dft_codebook(ULA(8), 2)
    measured = torch.zeros(book.num_beams, dtype=torch.bool)
    measured[::2] = True
    torch.manual_seed(0)
    sel = AttentionSelector(SelectorConfig(history=3, csi_keys=True, **CTX), book.beams, measured)
    rsrp = torch.randn(6, 3, book.num_beams, generator=g) * 5
    phase = (torch.rand(6, 3, book.num_beams, generator=g) * 2 - 1) * math.pi
    common = (torch.rand(6, 3, 1, generator=g) * 2 - 1) * math.pi  # one phase per decision and report
    a = sel(rsrp, report_phase=phase)
    b = sel(rsrp, report_phase=phase + common)
    assert torch.allclose(a.weights, b.weights, atol=1e-5)
    # ...while a phase between the beams does change the keys.
    tilt = phase.clone()
    tilt[..., 2] += 2.0
    assert not torch.allclose(sel.keys(rsrp, phase), sel.keys(rsrp, tilt), atol=1e-4)


def test_csi_keys_need_the_report_phases_with_one_line_errors():
    book = dft_codebook(ULA(8), 2)
    measured = torch.ones(book.num_beams, dtype=torch.bool)
    sel = AttentionSelector(SelectorConfig(history=2, csi_keys=True), book.beams, measured)
    rsrp = torch.zeros(4, 2, book.num_beams)
    with pytest.raises(ValueError, match=r"^selector: 'csi_keys' is on but no 'report_phase'"):
        sel(rsrp)
    with pytest.raises(ValueError, match=r"^selector: argument 'report_phase' has shape \(4, 1, 16\); expected"):
        sel(rsrp, report_phase=torch.zeros(4, 1, book.num_beams))
    with pytest.raises(ValueError, match=r"^selector: field 'csi_keys' = 1; expected true or false"):
        SelectorConfig(csi_keys=1)


def test_csi_keys_without_phase_reports_are_refused_by_training(tmp_path):
    from beamattn.wireless.train import train_selector

    scn = tiny_scenario(selector={"csi_keys": True}, measurement={"with_phase": False})
    with pytest.raises(ValueError, match=r"^selector: field 'csi_keys' = true needs measurement 'with_phase'"):
        train_selector(scn, tmp_path / "out", progress=False)


def test_a_config_without_csi_keys_keeps_its_dict_and_one_with_them_round_trips(tmp_path):
    from beamattn.wireless.checkpoint import load_selector, save_selector

    assert "csi_keys" not in SelectorConfig().to_dict()  # checkpoints and Keras files of before the field
    cfg = SelectorConfig(history=2, csi_keys=True, **CTX)
    assert cfg.to_dict()["csi_keys"] is True
    book = dft_codebook(ULA(8), 2)
    measured = torch.zeros(book.num_beams, dtype=torch.bool)
    measured[::2] = True
    torch.manual_seed(0)
    sel = AttentionSelector(cfg, book.beams, measured)
    path = tmp_path / "sel.safetensors"
    save_selector(sel, path)
    back = load_selector(path, book.beams, measured)
    assert back.config == cfg
    rsrp, phase = torch.randn(5, 2, book.num_beams) * 4, torch.rand(5, 2, book.num_beams) * 6
    assert torch.equal(sel(rsrp, report_phase=phase).weights, back(rsrp, report_phase=phase).weights)


def test_the_csi_keys_selector_trains_runs_and_counts_its_phases_as_a_csi_report(tmp_path):
    from beamattn.wireless.runner import run_scenario
    from beamattn.wireless.train import train_selector

    scn = tiny_scenario(selector={"csi_keys": True, **CTX})
    res = train_selector(scn, tmp_path / "t", steps=5, progress=False)
    assert res["selector"]["csi_keys"] is True
    out = run_scenario(scn, None, progress=False, policies=["genie", "attention"], checkpoint=res["checkpoint"],
                       figures=False)
    assert math.isfinite(out.summary["attention"]["loss_db"]["mean"])
    # |Set B| phases per decision: the latest report's (the older ones were sent with their own decisions).
    assert out.summary["attention"]["report"] == {"bits": None, "complex_values": scn.measurement.set_b}


def test_averaged_type_one_with_alpha_one_is_type_one_oversampled():
    scn = tiny_scenario(measurement={"history": 2})
    _, ep, _ = next(episodes(scn, 0, 2))
    plain = make_policy("type1-oversampled").decide(ep)
    avg = make_policy("type1-oversampled-avg", alpha=1.0).decide(ep)
    assert torch.equal(plain.index, avg.index)


def test_averaged_type_one_on_a_static_exact_channel_picks_the_best_beam():
    # Noiseless reports of a static channel: every report gives the same exact gains, so the EWMA of them is
    # the true gain and the pick is the genie beam of Set A (an orthogonal Set B: the DFT basis).
    from test_policies_csi import _exact_episode

    g = torch.Generator().manual_seed(4)
    h0 = torch.randn(3, 8, generator=g, dtype=torch.complex128)
    ep = _exact_episode(h0, 2, 8, history=3, period=0.01)
    dec = make_policy("type1-oversampled-avg", alpha=0.3).decide(ep)
    best = (h0 @ ep.codebook.beams.T).abs().argmax(-1)  # [B]
    assert torch.equal(dec.index, best[:, None].expand_as(dec.index))


@pytest.mark.parametrize("model", ["mlp", "lstm", "score-classifier"])
def test_learned_baselines_read_the_same_complex_reports_as_a_csi_keys_selector(model):
    from beamattn.wireless.learned.models import build_model, count_parameters, parameter_count
    from beamattn.wireless.learned.train import model_config

    scn = tiny_scenario(selector={"csi_keys": True, **CTX})
    cfg = model_config(scn, model)
    assert cfg.csi
    _, ep, _ = next(episodes(scn, 0, 1))
    measured = torch.zeros(ep.num_beams, dtype=torch.bool)
    measured[ep.set_b] = True
    torch.manual_seed(0)
    net = build_model(cfg, ep.codebook.beams, measured)
    assert count_parameters(net) == parameter_count(cfg.arch, cfg.hidden, cfg.history, int(measured.sum()),
                                                    ep.num_beams, scn.selector, csi=True)
    rsrp, phase = ep.history(cfg.history)  # [B, D, L, K]
    m = ep.num_beams
    logits = net(rsrp[..., :m], phase[..., :m])
    assert logits.shape == rsrp.shape[:2] + (m,)
    # The phases between beams enter the logits.
    tilt = phase[..., :m].clone()
    tilt[..., ep.set_b[1]] += 2.0
    assert not torch.allclose(logits, net(rsrp[..., :m], tilt), atol=1e-6)
    with pytest.raises(ValueError, match=rf"^learned model '{model}': argument 'report_phase' = None; expected"):
        net(rsrp[..., :m])
