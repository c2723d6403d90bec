"""Scenario files: every shipped file loads; bad fields give one clear error naming field and value."""

from pathlib import Path

import pytest

from beamattn.wireless.scenario import ScenarioError, load_scenario, parse_scenario
from wireless_fixtures import tiny_scenario

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.toml"))


def test_there_are_scenarios():
    names = {p.stem for p in SCENARIOS}
    assert {"vehicular-60", "vehicular-120", "pedestrian-umi", "highspeed-300", "indoor-blockage"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_load_and_are_documented(path):
    text = path.read_text()
    assert text.startswith("#"), "each scenario file starts with a header comment"
    scn = load_scenario(path)
    assert scn.name == path.stem
    assert scn.drops >= 1 and scn.array.num_ant >= 1


@pytest.mark.parametrize(
    "table, values, pattern",
    [
        ("channel", {"sped_kmh": 60}, r"unknown field 'sped_kmh' \(did you mean 'speed_kmh'\?\)"),
        ("channel", {"speed_kmh": -5}, r"'speed_kmh' = -5"),
        ("channel", {"backend": "sionna-cld"}, r"'backend' = 'sionna-cld'"),
        ("array", {"num_cols": 0}, r"'num_cols' = 0"),
        ("measurement", {"set_b": 99}, r"'set_b' = 99 .*Set A \(16 beams\)"),
        ("measurement", {"period": 0.0}, r"'period' = 0.0"),
        ("measurement", {"snr_db": float("nan")}, r"'snr_db' = nan"),
        ("selector", {"normalizer": "sparsemx"}, r"'normalizer' = 'sparsemx'"),
        ("selector", {"history": 5}, r"'history' = 5 exceeds"),
        ("scenario", {"drops": 0}, r"'drops' = 0"),
        ("scenario", {"policies": ["genie", "exhaustiv"]}, r"unknown policy 'exhaustiv' \(did you mean 'exhaustive'"),
        ("training", {"lr": -1.0}, r"'lr' = -1.0"),
        ("channel", {"duration": "long"}, r"'duration' = 'long'; expected a number"),
    ],
)
def test_bad_fields_name_the_field_and_value(table, values, pattern):
    with pytest.raises(ScenarioError, match=pattern) as e:
        tiny_scenario(**{table: values})
    assert str(e.value).startswith("tiny: ")
    assert "\n" not in str(e.value)  # one line


def test_hierarchical_needs_wide_beams():
    with pytest.raises(ScenarioError, match=r"'num_wide' = 0 .*hierarchical"):
        tiny_scenario(codebook={"num_wide": 0}, scenario={"policies": ["genie", "hierarchical"]})
    # Without an explicit list, the default policies leave the wide-beam search out.
    assert "hierarchical" not in tiny_scenario(codebook={"num_wide": 0}).policies


def test_unknown_table_and_missing_name():
    with pytest.raises(ScenarioError, match=r"unknown field 'chanel' \(did you mean 'channel'\?\)"):
        parse_scenario({"scenario": {"name": "x"}, "chanel": {}})
    with pytest.raises(ScenarioError, match="'name' is missing"):
        parse_scenario({"scenario": {}})


def test_bad_files(tmp_path):
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario\nname = 1")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)


def test_speed_kmh_is_converted():
    assert tiny_scenario().channel.speed == pytest.approx(60 / 3.6)


def test_a_ray_traced_scene_path_is_relative_to_the_scenario_file(tmp_path, monkeypatch):
    """As a file back-end's channel files: ``scene = "city.xml"`` next to the TOML loads from any directory."""
    import tomllib

    from beamattn.wireless.scenario import load_scenario

    doc = tomllib.loads(Path("scenarios/munich-vehicular.toml").read_text())
    site = tmp_path / "site"
    site.mkdir()
    (site / "city.xml").write_text('<scene version="2.1.0"></scene>')  # only its existence is checked here
    lines = Path("scenarios/munich-vehicular.toml").read_text().replace('scene = "munich"', 'scene = "city.xml"')
    (site / "city.toml").write_text(lines)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    scn = load_scenario(site / "city.toml")
    assert Path(scn.channel.scene) == site / "city.xml"
    assert doc["channel"]["scene"] == "munich"  # a shipped scene's name is left as it is
    assert load_scenario(Path(__file__).resolve().parent.parent / "scenarios/munich-vehicular.toml").channel.scene \
        == "munich"
