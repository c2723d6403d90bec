"""Property-based: any malformed scenario gives one clear ScenarioError line, never another exception."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beamattn.wireless.scenario import ScenarioError, parse_scenario
from wireless_fixtures import TINY_DOC

FIELDS = [
    ("scenario", "seed"), ("scenario", "drops"), ("scenario", "snr_db"), ("scenario", "policies"),
    ("channel", "speed_kmh"), ("channel", "duration"), ("channel", "sample_interval"), ("channel", "num_clusters"),
    ("channel", "trajectory"), ("channel", "heading_deg"), ("channel", "k_factor_db"), ("channel", "backend"),
    ("channel", "blockage_rate"), ("channel", "num_subcarriers"), ("channel", "turn_start"),
    ("array", "num_rows"), ("array", "num_cols"), ("array", "spacing_h"),
    ("codebook", "oversampling"), ("codebook", "num_wide"),
    ("measurement", "period"), ("measurement", "delay"), ("measurement", "snr_db"), ("measurement", "samples"),
    ("measurement", "set_b"), ("measurement", "history"), ("measurement", "with_phase"),
    ("selector", "normalizer"), ("selector", "mode"), ("selector", "temperature"), ("selector", "topk"),
    ("training", "lr"), ("training", "steps"), ("scenario", "nmae"), ("channel", "sped"),
]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                              max_size=2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=3))
def test_malformed_scenarios_give_one_clear_error(changes):
    data = {k: dict(v) for k, v in TINY_DOC.items()}
    for (table, key), value in changes:
        if value is None:
            continue  # TOML has no null
        data.setdefault(table, {})[key] = value
    try:
        scn = parse_scenario(data, source="fuzz.toml")
    except ScenarioError as e:
        msg = str(e)
        assert msg.startswith("fuzz.toml: ") and "\n" not in msg
        return
    # Accepted: every number that reached the scenario is finite and sensible.
    assert scn.drops >= 1 and scn.array.num_ant >= 1
    assert math.isfinite(scn.snr_db) and scn.measurement.period > 0
