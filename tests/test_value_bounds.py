"""Values that pass validation must not crash or mislead (issue 10, section 4).

Each case below was accepted by the old code and then crashed (OverflowError, a 320 GB allocation),
failed only after computing started, or gave a wrong number (BLER 1.0 at 400 dB, a Wilson interval
that misses its estimate, NaN beams from a checkpoint with huge weights).
"""

import copy
import json
import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from beamattn.wireless.limits import RANGES, Range, check_range, memory_limit
from beamattn.wireless.scenario import ScenarioError, check_memory, estimate_memory, load_scenario, parse_scenario
from wireless_fixtures import TINY_DOC, tiny_scenario


def _doc(**tables):
    data = copy.deepcopy(TINY_DOC)
    for table, values in tables.items():
        data.setdefault(table, {}).update(values)
    return data


def _refused(data, *patterns, source="b.toml"):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(data, source=source)
    msg = str(e.value)
    assert msg.startswith(f"{source}: ") and "\n" not in msg, msg
    for p in patterns:
        assert p in msg, msg
    return msg


# ------------------------------------------------------------------ physically meaningful ranges
@pytest.mark.parametrize("table, field, value, shown", [
    ("scenario", "snr_db", 1e300, "[-100, 100] dB"),  # old: OverflowError in 10 ** (snr_db / 10)
    ("scenario", "outage_db", -1e300, "[-100, 100] dB"),
    ("measurement", "snr_db", 1e300, "[-100, 100] dB"),
    ("channel", "blockage_duration", 1e6, "[0.0001, 60] s"),  # old: tried to allocate ~320 GB
    ("array", "num_cols", 100000, "[1, 1024] elements"),  # old: tried to allocate ~320 GB
    ("channel", "carrier_frequency", 1e20, "[1e+08, 1e+12] Hz"),
    ("channel", "speed_kmh", 1e9, "[0, 3600] km/h"),
    ("channel", "duration", 1e9, "[1e-06, 3600] s"),
    ("channel", "num_subcarriers", 10**6, "[0, 4096]"),
    ("codebook", "oversampling", 1000, "[1, 64]"),
    ("measurement", "period", 1e9, "[1e-06, 10] s"),
    ("measurement", "samples", 10**6, "[1, 4096]"),
    ("scenario", "chunk_drops", 10**9, "[1, 1e+06]"),
    ("training", "lr", 1e9, "(0, 10]"),
    ("selector", "temperature", 1e-300, "[0.001, 1000]"),  # old: 1 / temperature overflowed to inf: NaN beams
    ("selector", "d_model", 10**9, "[1, 4096]"),  # old: a [1e9, L+1, 2n+1] weight allocated at construction
])
def test_out_of_range_numbers_are_one_line_naming_field_value_and_range(table, field, value, shown):
    msg = _refused(_doc(**{table: {field: value}}), f"'{field}' = {value!r}", shown)
    assert "expected" in msg


def test_huge_snr_used_to_overflow_and_now_the_top_of_the_range_computes():
    from beamattn.wireless.runner import episodes

    scn = parse_scenario(_doc(scenario={"snr_db": 100.0}, measurement={"snr_db": -100.0}), source="t")
    _, ep, _ = next(episodes(scn, 0, 2))
    assert torch.isfinite(ep.reports_db).all() and torch.isfinite(ep.cov_use.real).all()


def test_every_documented_range_is_checked_by_check_range():
    for name, rng in RANGES.items():
        lo = rng.lo if not rng.open_lo else (rng.lo + 1 if rng.integer else math.nextafter(rng.lo, math.inf))
        check_range("t", name, lo)
        check_range("t", name, rng.hi)
        above = rng.hi + 1 if rng.integer else rng.hi * 1.5 + 1
        with pytest.raises(ValueError, match=rf"t: field '{name}' = .*expected an? (integer|number) in"):
            check_range("t", name, above)
    with pytest.raises(ValueError, match="an integer in"):
        check_range("t", "x", 1.5, Range(0, 4, integer=True))
    with pytest.raises(ValueError):
        check_range("t", "x", True, Range(0, 4))
    with pytest.raises(ValueError):
        check_range("t", "x", math.nan, Range(0, 4))


def test_seeds_use_the_one_seed_range():
    _refused(_doc(scenario={"seed": 2**64}), "'seed' = 18446744073709551616", "2^63 - 1")
    _refused(_doc(training={"seed": 2**63}), "training: field 'seed'")
    assert parse_scenario(_doc(scenario={"seed": 2**63 - 1})).seed == 2**63 - 1


# ------------------------------------------------------------------ memory estimate
def test_memory_estimate_equals_the_tensors_that_are_allocated():
    """The estimate's closed forms against the real tensors of one chunk."""
    from beamattn.wireless.runner import episodes

    scn = tiny_scenario(channel={"num_subcarriers": 4})
    items = {i.what: i.bytes for i in estimate_memory(scn)}
    _, ep, sample = next(episodes(scn, 0, scn.chunk_drops))
    nbytes = lambda t: t.numel() * t.element_size()  # noqa: E731
    assert items["channel h [B, T, F, N] x 3"] == 3 * nbytes(sample.h)
    assert items["covariances [B, D, N, N] x 3"] == 3 * nbytes(ep.cov_use)
    b, r, k = ep.reports_db.shape
    assert items["measurement noise and samples [B, R, S, K] x 4"] == 4 * b * r * scn.measurement.samples * k * 8
    d, u = ep.num_decisions, ep.timeline.use_len
    f, n, m = sample.h.shape[2], sample.h.shape[3], ep.num_beams
    assert items["use-interval channels [B, D, U·F, N]"] == b * d * u * f * n * 8
    assert items["use-interval beam gains [B, D, U·F, M] complex + 2 float32"] == b * d * u * f * m * 16


_RSS_SCRIPT = """
import copy, json
from wireless_fixtures import TINY_DOC
from beamattn.wireless.runner import episodes
from beamattn.wireless.scenario import estimate_memory, parse_scenario

def scenario(duration):
    d = copy.deepcopy(TINY_DOC)
    d["scenario"].update(chunk_drops=16, drops=48, policies=["genie", "mrt"])
    d["array"].update(num_rows=8, num_cols=8)
    d["codebook"].update(num_wide=0)
    d["measurement"].update(set_b=0)
    d["channel"].update(duration=duration, sample_interval=0.002, num_subcarriers=4)
    return parse_scenario(d)

for _ in episodes(scenario(0.1), 0, 2):  # the same operations once, small: library buffers, thread pools
    pass
scn = scenario(0.8)
est = sum(i.bytes for i in estimate_memory(scn) if not i.what.startswith(("training", "steps")))
def status(key):  # kB fields of /proc/self/status, in bytes
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

# Reset the peak (VmHWM) to the current RSS: ru_maxrss would keep an earlier, larger peak (imports,
# the warm-up), and the growth would read 0.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
r0 = status("VmRSS")
for _ in episodes(scn, 0, scn.drops):
    pass
print(json.dumps([est, status("VmHWM") - r0]))
"""


def test_memory_estimate_bounds_the_measured_peak_of_a_chunk_loop():
    """Peak RSS growth (Linux VmHWM, reset before the loop) of three chunks of a wideband UPA scenario stays
    below the estimate, and is not far below it (the estimate is not a meaningless huge number)."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT], cwd=tests, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(tests), "OMP_NUM_THREADS": "1"})
    estimate, measured = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.25 * estimate < measured <= estimate, (estimate, measured)


def test_memory_refusal_names_the_fields_that_drive_the_largest_tensor():
    # In range field by field, too large together: 32 x 32 antennas, covariances [B, D, 1024, 1024].
    data = _doc(scenario={"chunk_drops": 1000, "drops": 1000}, array={"num_rows": 32, "num_cols": 32},
                codebook={"num_wide": 0}, channel={"duration": 60.0, "sample_interval": 0.01},
                measurement={"set_b": 0})
    msg = _refused(data, "memory: the scenario needs about", "covariances [B, D, N, N]", "chunk_drops = 1000",
                   "num_rows 32 x num_cols 32", "expected at most")
    assert "PiB" in msg or "TiB" in msg  # far beyond any machine: refused with the default limit too


def test_memory_limit_is_overridable(monkeypatch):
    scn = tiny_scenario()
    need = check_memory(scn)
    assert need == sum(i.bytes for i in estimate_memory(scn))
    with pytest.raises(ValueError, match=r"expected at most 1.0 KiB \(max_memory\)"):
        check_memory(scn, max_memory=1024)
    monkeypatch.setenv("BEAMATTN_MEMORY_LIMIT", "1K")
    assert memory_limit() == (1024, "$BEAMATTN_MEMORY_LIMIT")
    with pytest.raises(ScenarioError, match=r"memory: .*BEAMATTN_MEMORY_LIMIT"):
        tiny_scenario()
    monkeypatch.setenv("BEAMATTN_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="BEAMATTN_MEMORY_LIMIT = 'lots'"):
        memory_limit()
    monkeypatch.setenv("BEAMATTN_MEMORY_LIMIT", "64G")
    assert memory_limit()[0] == 64 * 2**30


def test_blockage_events_are_in_the_estimate():
    base = {i.what: i.bytes for i in estimate_memory(tiny_scenario())}
    blocked = {i.what: i.bytes for i in estimate_memory(tiny_scenario(channel={"blockage_rate": 100.0,
                                                                               "blockage_duration": 60.0}))}
    assert "blockage events [B, T, E] float64 x 3" not in base
    assert blocked["blockage events [B, T, E] float64 x 3"] > 3 * 2 * 150 * 120_000 * 8  # rate x 20 holds


# ------------------------------------------------------------------ small cases, one line each
def test_parse_scenario_of_a_non_document_is_one_line():
    for bad in (None, 5, "name = 'x'", [("scenario", {})]):
        with pytest.raises(ScenarioError, match="expected a table of tables"):
            parse_scenario(bad)
    _refused({"scenario": 5}, "scenario: expected a table [scenario], got int")
    _refused({**_doc(), "channel": [1, 2]}, "channel: expected a table [channel], got list")


def test_binary_file_directory_and_unreadable_names(tmp_path):
    binary = tmp_path / "weights.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(ScenarioError, match=rf"^{binary}: not a text file \(byte 0 is not UTF-8\)"):
        load_scenario(binary)
    with pytest.raises(ScenarioError, match=rf"^{tmp_path}: is a directory; expected a scenario TOML file"):
        load_scenario(tmp_path)
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match="expected a path"):
        load_scenario(None)


@pytest.mark.parametrize("name", [5, "", " ", "a/b", "../up", ".hidden", "a\\b", "x" * 101, "tab\tname", True])
def test_names_must_be_safe_folder_names(name):
    _refused(_doc(scenario={"name": name}), "scenario: field 'name'", "it names result folders")


@pytest.mark.parametrize("name", ["vehicular-60-upa", "tiny", "_test-only", "speed=30", "v1.2+x", "schnell-ü"])
def test_good_names_are_kept(name):
    assert parse_scenario(_doc(scenario={"name": name})).name == name


def test_num_wide_check_and_message_agree():
    _refused(_doc(codebook={"num_wide": 1}), "'num_wide' = 1; expected 0 (no wide beams) or an integer >= 2")
    scn = parse_scenario(_doc(codebook={"num_wide": 2}))
    assert scn.codebook.num_wide == 2


@pytest.mark.parametrize("tables, pattern", [
    ({"codebook": {"num_wide": 3}}, "'num_wide' = 3 does not divide the codebook size M = 16"),
    ({"array": {"num_rows": 2}}, "'num_wide' = 4 needs a horizontal ULA"),
    ({"array": {"spacing_h": 0.4}}, "'num_wide' = 4 needs every narrow beam in visible space"),
    ({"array": {"num_rows": 4, "num_cols": 1}, "codebook": {"num_wide": 0}}, "'oversampling' = 2 does not fit"),
    ({"channel": {"duration": 0.02}}, "too short for history"),
])
def test_what_computing_would_refuse_is_refused_at_load_time(tables, pattern):
    """Old code: accepted, then failed in make_codebooks / make_timeline after computing started, even when
    the hierarchical policy was not requested."""
    data = _doc(scenario={"policies": ["genie", "mrt"]}, **tables)
    _refused(data, pattern)


def test_topk_larger_than_the_codebook_is_refused_at_load_time():
    """Old code: accepted; the selector refused it when it first ran."""
    _refused(_doc(selector={"mode": "topk", "topk": 17}), "'topk' = 17 exceeds the codebook size M = 16")
    assert parse_scenario(_doc(selector={"mode": "topk", "topk": 16})).selector.topk == 16


def test_wide_feasibility_agrees_with_the_wide_codebook():
    """The load-time check refuses exactly what wide_codebook refuses, on a grid of arrays."""
    from beamattn.wireless.runner import make_codebooks

    for spacing in (0.3, 0.5, 0.7):
        for num_wide in (2, 3, 4, 5, 8):
            data = _doc(array={"spacing_h": spacing}, codebook={"num_wide": num_wide},
                        scenario={"policies": ["genie"]})
            try:
                scn = parse_scenario(data)
            except ScenarioError:
                scn = None
            if scn is not None:
                assert make_codebooks(scn)[1].num_beams == num_wide
            else:
                from beamattn.wireless.arrays import ULA
                from beamattn.wireless.codebooks import dft_codebook, wide_codebook

                with pytest.raises(ValueError):
                    wide_codebook(ULA(8, spacing), num_wide, dft_codebook(ULA(8, spacing), 2))


def test_invisible_beam_count_equals_the_codebooks_nan_directions():
    from beamattn.wireless.arrays import UPA
    from beamattn.wireless.codebooks import dft_codebook, dft_grid_shape, dft_invisible_beams

    for array, o in ((UPA(1, 8, spacing_h=0.4), 2), (UPA(2, 4, 0.3, 0.45), (2, 2)), (UPA(1, 16), 4)):
        cb = dft_codebook(array, o)
        assert dft_invisible_beams(array, o) == int(torch.isnan(cb.directions[:, 0]).sum())
        assert math.prod(dft_grid_shape(array, o)) == cb.num_beams


# ------------------------------------------------------------------ link level
def test_linklevel_snr_outside_the_range_is_refused_before_computing(tmp_path, capsys):
    from beamattn.cli import main

    p = tmp_path / "tiny.toml"
    p.write_text('[scenario]\nname = "tiny"\ndrops = 2\nchunk_drops = 2\n[channel]\nspeed_kmh = 30\n'
                 'duration = 0.2\nsample_interval = 0.002\n[array]\nnum_cols = 8\n')
    assert main(["linklevel", str(p), "--out", str(tmp_path / "ll"), "--estimator", "perfect",
                 "--snr-db=400"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("beamattn linklevel: error: linklevel: '--snr-db' value 400.0; expected a transmit SNR "
                          "in [-100, 100] dB") and len(err.splitlines()) == 1
    assert not (tmp_path / "ll").exists()


def test_linklevel_chain_refuses_a_noise_variance_that_overflows_float32():
    """400 dB (no = 1e-40, subnormal in float32) made Sionna's LMMSE equalizer return NaN: BLER 1.0."""
    from beamattn.linklevel.chain import LinkChain, LinkConfig

    chain = LinkChain(LinkConfig(num_subcarriers=12, estimator="perfect", num_iter=5))
    h = torch.ones(8, 1, 1, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"noise variance no = 1e-40; expected a number in \[1e-10, 1e\+10\]"):
        chain.errors(h, 10 ** (-400 / 10), seed=1)
    for bad in (0.0, -1.0, math.inf, math.nan, "x"):
        with pytest.raises(ValueError, match="noise variance"):
            chain.errors(h, bad, seed=1)
    # The ends of the range compute: no error at 100 dB, every block in error at -100 dB.
    assert not chain.errors(h, 10 ** (-100 / 10), seed=1).any()
    assert chain.errors(h, 10 ** (100 / 10), seed=1).all()


def test_linklevel_genie_and_mrt_at_the_top_of_the_range_have_no_block_errors():
    from beamattn.linklevel.chain import LinkConfig
    from beamattn.linklevel.run import run_linklevel

    out = run_linklevel(tiny_scenario(), None, policies=["genie", "mrt"], snr_db_list=[100.0], max_blocks=20,
                        target_block_errors=5, batch=20, progress=False,
                        config=LinkConfig(num_subcarriers=24, estimator="perfect", num_iter=5))
    for name in ("genie", "mrt"):
        assert out["results"][name]["bler"] == [0.0], name


# ------------------------------------------------------------------ Wilson interval
def _scipy_wilson(errors, blocks):
    from scipy.stats import binomtest

    ref = binomtest(errors, blocks).proportion_ci(confidence_level=0.95, method="wilson")
    return ref.low, ref.high


@pytest.mark.parametrize("blocks", [1, 2, 6, 11, 21, 100, 997, 2000])
def test_wilson_interval_equals_scipy_over_a_grid_with_the_ends(blocks):
    from beamattn.linklevel.run import wilson_interval

    for errors in sorted({0, 1, 2, blocks // 3, blocks // 2, blocks - 2, blocks - 1, blocks} & set(range(blocks + 1))):
        low, high = wilson_interval(errors, blocks)
        ref_low, ref_high = _scipy_wilson(errors, blocks)
        assert low == pytest.approx(ref_low, abs=1e-4) and high == pytest.approx(ref_high, abs=1e-4)
        assert low <= errors / blocks <= high
    assert wilson_interval(0, blocks)[0] == 0.0 and wilson_interval(blocks, blocks)[1] == 1.0


def test_wilson_interval_at_100_of_100_contains_the_bler():
    from beamattn.linklevel.run import wilson_interval

    assert wilson_interval(100, 100)[1] == 1.0  # old: 0.9999999999999999 < BLER 1.0
    assert wilson_interval(0, 11)[0] == 0.0  # old: 1.7e-18 > BLER 0


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**6).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_contains_its_estimate(case):
    from beamattn.linklevel.run import wilson_interval

    errors, blocks = case
    low, high = wilson_interval(errors, blocks)
    assert 0.0 <= low <= errors / blocks <= high <= 1.0


def test_wilson_interval_refuses_impossible_counts():
    from beamattn.linklevel.run import wilson_interval

    for errors, blocks in ((1, 0), (5, 4), (-1, 3), (1.5, 3)):
        with pytest.raises(ValueError, match="wilson_interval"):
            wilson_interval(errors, blocks)


# ------------------------------------------------------------------ huge finite weights
def _learned_selector():
    from beamattn.wireless.arrays import ULA
    from beamattn.wireless.codebooks import dft_codebook
    from beamattn.wireless.selector import AttentionSelector, SelectorConfig

    torch.manual_seed(0)
    beams = dft_codebook(ULA(8), 2).beams  # [16, 8]
    measured = torch.zeros(16, dtype=torch.bool)
    measured[::2] = True
    return AttentionSelector(SelectorConfig(learned=True, history=2, d_model=8, neighbours=1), beams, measured)


def _huge(sel):
    with torch.no_grad():
        sel.query.mul_(1e20)  # finite, but q·k ~ 1e40 overflows float32: NaN beams
        sel.key_net[0].weight.mul_(1e20)
    return sel


def test_huge_finite_weights_give_nan_beams_in_the_forward_pass():
    """The failure the checks below refuse: every weight is finite, the beams are not."""
    from beamattn.wireless.keras_export import representative_reports

    sel = _huge(_learned_selector())
    assert all(bool(torch.isfinite(p).all()) for p in sel.parameters())
    rsrp, phase = representative_reports(sel)
    with torch.no_grad():
        try:
            beams = sel(rsrp, phase).beams
            assert not torch.isfinite(torch.view_as_real(beams)).all()
        except ValueError as e:  # the core refuses the NaN attention weights
            assert "NaN" in str(e)


def test_export_refuses_huge_weights_naming_the_tensor(tmp_path):
    from beamattn.wireless.checkpoint import save_selector
    from beamattn.wireless.keras_export import export_keras, export_selector_keras

    with pytest.raises(ValueError, match=r"^export: in-memory selector: the selector's forward pass overflows: "
                                         r"38 of 38 .*weight 'query' \(largest \|value\| [0-9.]+e\+19\)"):
        export_selector_keras(_huge(_learned_selector()), tmp_path / "k.safetensors")
    assert not (tmp_path / "k.safetensors").exists()
    ckpt = tmp_path / "huge.safetensors"
    save_selector(_huge(_learned_selector()), ckpt)
    with pytest.raises(ValueError, match=r"checkpoint .*huge.safetensors: the selector's forward pass overflows.*"
                                         r"'key_net.0.weight'") as e:
        export_keras(ckpt, tmp_path / "k.safetensors")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "k.safetensors").exists()
    # A normal selector exports, and its Keras file holds the weights.
    out = export_selector_keras(_learned_selector(), tmp_path / "ok.safetensors")
    assert out.stat().st_size > 0


def test_checkpoint_load_refuses_huge_weights(tmp_path):
    from beamattn.wireless.checkpoint import CheckpointError, load_selector, save_selector
    from beamattn.wireless.keras_export import check_selector_forward

    ckpt = save_selector(_huge(_learned_selector()), tmp_path / "huge.safetensors")
    sel = _learned_selector()
    with pytest.raises(CheckpointError, match=r"huge.safetensors: the selector's forward pass overflows"):
        load_selector(ckpt, sel.beams, sel.measured)
    good = save_selector(sel, tmp_path / "good.safetensors")
    loaded = load_selector(good, sel.beams, sel.measured)
    check_selector_forward(loaded)  # accepted, and the weights are the ones saved
    assert torch.equal(loaded.query, sel.query)


def test_export_refuses_weights_that_are_infinite_in_float32(tmp_path):
    from beamattn.wireless.arrays import ULA
    from beamattn.wireless.codebooks import dft_codebook
    from beamattn.wireless.keras_export import export_selector_keras
    from beamattn.wireless.selector import AttentionSelector, SelectorConfig

    torch.manual_seed(0)
    beams = dft_codebook(ULA(8), 2, dtype=torch.complex128).beams
    sel = AttentionSelector(SelectorConfig(learned=True, history=2, d_model=8), beams, torch.ones(16, dtype=bool))
    with torch.no_grad():
        sel.beam_bias[3] = 1e39  # finite in float64, inf in the float32 Keras file
    with pytest.raises(ValueError, match=r"weight 'beam_bias' is not finite in float32 \(largest \|value\| 1e\+39\)"):
        export_selector_keras(sel, tmp_path / "k.safetensors")
