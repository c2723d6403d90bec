"""Policy checks written from the mutation run (scripts/mutation.py, group ``policies``).

The registered variants carry the parameters their names state, the untrained attention policy is
untrained whatever config it is given, OMP-MRT ranks the codebook beams by their overlap with its own
beam, and a bad decision's message names the global drop id (not the index inside a chunk).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from beamattn.wireless.policies import make_policy
from beamattn.wireless.policies.checks import DecisionError, check_decision
from beamattn.wireless.runner import episodes

sys.path.insert(0, str(Path(__file__).parent))
from wireless_fixtures import tiny_scenario  # noqa: E402


@pytest.mark.parametrize("name, beams, phase_bits, history", [
    ("type2-l2-qpsk", 2, 2, 1), ("type2-l2-8psk", 2, 3, 1), ("type2-l4-qpsk", 4, 2, 1), ("type2-l4-8psk", 4, 3, 1),
    ("type2-l4-8psk-avg", 4, 3, None),
])
def test_type2_variants_have_the_l_and_psk_of_their_names(name, beams, phase_bits, history):
    p = make_policy(name)
    assert (p.beams, p.phase_bits, p.history) == (beams, phase_bits, history)


@pytest.mark.parametrize("name, history, debias, shrink", [
    ("mrt-reports", 1, False, False), ("mrt-reports-avg", None, True, False), ("mrt-reports-mmse", None, True, True),
])
def test_mrt_from_reports_variants(name, history, debias, shrink):
    p = make_policy(name)
    assert (p.history, p.debias, p.shrink) == (history, debias, shrink)


def test_untrained_attention_stays_untrained_with_a_learned_config():
    from beamattn.wireless.selector import SelectorConfig

    p = make_policy("attention-untrained", config=SelectorConfig(learned=True))
    assert p.config.learned is False


@pytest.fixture(scope="module")
def second_chunk():
    """The second chunk of the tiny scenario (3 drops in chunks of 2): one drop, global id 2."""
    scn = tiny_scenario()
    chunks = episodes(scn, scn.seed, scn.drops)
    next(chunks)
    _, ep, _ = next(chunks)
    assert ep.drop_ids.tolist() == [2]
    return ep


def test_omp_mrt_ranks_codebook_beams_by_their_overlap_with_its_beam(second_chunk):
    # With w = conj(ĥ)/||ĥ||, |v_mᴴ w| = |ĥᵀ v_m| / ||ĥ||: the beam OMP-MRT ranks first is the codebook
    # beam closest to the beam it uses.
    ep = second_chunk
    dec = make_policy("omp-mrt").decide(ep)
    assert dec.ranking is not None and dec.ranking.shape == (*dec.index.shape, min(4, ep.num_beams))
    overlap = torch.einsum("mn,bdn->bdm", ep.codebook.beams.conj().to(dec.beams.dtype), dec.beams).abs()  # [B, D, M]
    assert torch.equal(dec.ranking[..., 0], overlap.argmax(-1))


def test_a_bad_decision_names_the_global_drop_id(second_chunk):
    ep = second_chunk
    good = make_policy("genie").decide(ep)
    beams = good.beams.clone()
    beams[0, 1, 0] = complex(float("nan"), 0.0)
    with pytest.raises(DecisionError, match="drop 2, decision 1"):
        check_decision("p", ep, dataclasses.replace(good, beams=beams))


def test_omp_accepts_one_path_and_refuses_a_relative_tolerance_of_one():
    assert make_policy("omp-beam", max_paths=1).max_paths == 1
    assert make_policy("omp-beam", rel_tol=0.0).rel_tol == 0.0
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"'rel_tol' = .*; expected a number in \[0, 1\)"):
            make_policy("omp-beam", rel_tol=bad)
    with pytest.raises(ValueError, match="'max_paths' = 0"):
        make_policy("omp-beam", max_paths=0)


def test_omp_with_one_path_on_the_tiny_scenario_returns_valid_decisions(second_chunk):
    ep = second_chunk
    dec = make_policy("omp-mrt", max_paths=1).decide(ep)
    check_decision("omp-mrt", ep, dec)


def test_bandit_discount_refuses_bools_and_strings_and_accepts_one():
    assert make_policy("ucb1-discounted", gamma=1.0).gamma == 1.0
    for bad in (True, "0.5", 0.0, 1.5):
        with pytest.raises(ValueError, match="'gamma'"):
            make_policy("ucb1-discounted", gamma=bad)


def test_history_smoothing_accepts_alpha_one_and_refuses_zero():
    from beamattn.wireless.policies.base import check_history

    check_history("p", None, "mean", 1.0)  # alpha = 1: only the latest report (no smoothing), allowed
    for bad in (0.0, 1.01, "0.5"):
        with pytest.raises(ValueError, match=r"'alpha' = .*; expected 0 < alpha <= 1"):
            check_history("p", None, "mean", bad)


@pytest.mark.parametrize("name", ["mrt-reports", "mrt-reports-avg", "mrt-reports-mmse", "type2-l2-qpsk",
                                  "type2-l4-8psk-avg"])
def test_report_policies_read_their_reports_with_their_own_settings(name, second_chunk):
    from beamattn.wireless.policies.csi_codebooks import complex_reports

    p = make_policy(name)
    expected = complex_reports(second_chunk, p.name, p.history, debias=p.debias, shrink=p.shrink)
    torch.testing.assert_close(p.reports(second_chunk), expected, rtol=0, atol=0)
