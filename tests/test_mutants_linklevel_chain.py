"""Link-level configuration and range checks, from the mutation run (scripts/mutation.py, group ``linklevel-chain``).

The pure parts of ``linklevel/chain.py`` (no Sionna import): ``LinkConfig`` at the ends of its documented
ranges, the slot duration, the Eb/N0 → N0 closed form and the SNR / noise-variance ranges.
"""

from __future__ import annotations

import math

import pytest
import torch

from beamattn.linklevel.chain import NO_RANGE, LinkConfig, check_noise_variance, check_snr_db, ebno_to_no
from beamattn.wireless.limits import SNR_DB_RANGE


@pytest.mark.parametrize("kw", [
    {"num_subcarriers": 12}, {"num_ofdm_symbols": 2, "pilot_symbols": (0, 1)}, {"pilot_symbols": (0,)},
    {"pilot_symbols": (13,)}, {"bits_per_symbol": 6}, {"bits_per_symbol": 4}, {"code_rate": 0.99},
    {"estimator": "perfect"}, {"estimator": "lmmse"}, {"num_iter": 1},
])
def test_link_config_accepts_the_ends_of_its_ranges(kw):
    cfg = LinkConfig(**kw)
    assert all(getattr(cfg, k) == v for k, v in kw.items())


@pytest.mark.parametrize("field, value", [
    ("num_subcarriers", 11), ("num_subcarriers", 72.0), ("subcarrier_spacing", 0.0), ("num_ofdm_symbols", 1),
    ("pilot_symbols", (14,)), ("pilot_symbols", (-1,)), ("pilot_symbols", ()), ("bits_per_symbol", 8),
    ("bits_per_symbol", 3), ("code_rate", 1.0), ("code_rate", 0.0), ("estimator", "mmse"), ("num_iter", 0),
    ("num_iter", 2.0),
])
def test_link_config_refuses_out_of_range_fields_naming_them(field, value):
    with pytest.raises(ValueError, match=f"linklevel: field '{field}' = "):
        LinkConfig(**{field: value})


@pytest.mark.parametrize("field", ["num_iter", "num_subcarriers", "num_ofdm_symbols"])
def test_link_config_refuses_a_bool_count(field):
    """``True`` is an int in Python: LinkConfig(num_iter=True) was accepted as one LDPC iteration."""
    with pytest.raises(ValueError, match=f"'{field}' = True"):
        LinkConfig(**{field: True})


@pytest.mark.parametrize("spacing, symbols, seconds", [(15e3, 14, 1e-3), (30e3, 14, 0.5e-3), (60e3, 14, 0.25e-3),
                                                       (30e3, 7, 0.25e-3)])
def test_slot_duration_is_14_symbols_per_ms_at_15_khz(spacing, symbols, seconds):
    cfg = LinkConfig(subcarrier_spacing=spacing, num_ofdm_symbols=symbols, pilot_symbols=(2,))
    assert cfg.slot_duration == pytest.approx(seconds, rel=1e-12)


def test_to_dict_round_trips_with_a_list_of_pilots():
    cfg = LinkConfig(pilot_symbols=(1, 5, 9), bits_per_symbol=4, code_rate=0.25, estimator="lmmse", num_iter=7)
    d = cfg.to_dict()
    assert d["pilot_symbols"] == [1, 5, 9] and d["num_iter"] == 7 and d["code_rate"] == 0.25
    assert LinkConfig(**{**d, "pilot_symbols": tuple(d["pilot_symbols"])}) == cfg


@pytest.mark.parametrize("ebno_db, bps, rate", [(0.0, 2, 0.5), (10.0, 4, 0.5), (-3.0, 6, 0.75), (7.5, 2, 1 / 3)])
def test_ebno_to_no_is_one_over_ebno_bits_and_rate(ebno_db, bps, rate):
    # E_s = 1 carries bps·rate information bits: N0 = E_b / (Eb/N0) = 1 / (Eb/N0 · bps · rate)
    assert ebno_to_no(ebno_db, bps, rate) == pytest.approx(1.0 / (10 ** (ebno_db / 10) * bps * rate), rel=1e-14)


def test_snr_range_ends_are_accepted_and_beyond_refused_naming_the_field():
    assert check_snr_db(SNR_DB_RANGE.hi) == SNR_DB_RANGE.hi and check_snr_db(SNR_DB_RANGE.lo) == SNR_DB_RANGE.lo
    assert isinstance(check_snr_db(3), float)
    for bad in (SNR_DB_RANGE.hi + 1e-9, SNR_DB_RANGE.lo - 1e-9, True, "3", math.nan):
        with pytest.raises(ValueError, match="linklevel: 'snr' value"):
            check_snr_db(bad, field="'snr'")


def test_noise_variance_range_is_that_of_the_snr_range():
    lo, hi = NO_RANGE
    assert lo == pytest.approx(10 ** (-SNR_DB_RANGE.hi / 10)) and hi == pytest.approx(10 ** (-SNR_DB_RANGE.lo / 10))
    assert check_noise_variance(lo) == lo and check_noise_variance(hi) == hi
    assert check_noise_variance(torch.tensor(0.5)) == 0.5
    for bad in (lo / 2, hi * 2, True, "x", math.nan, None):
        with pytest.raises(ValueError, match="linklevel: noise variance no = "):
            check_noise_variance(bad)
