"""The command line and the demo: entry point, reproducibility, atomic outputs."""

import json
import subprocess
import sys

import pytest

from beamattn import __version__
from beamattn.cli import main
from beamattn.io import write_json_atomic


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "beamattn.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"beamattn {__version__}"


def test_bad_argument_names_the_value(capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--seed", "-3"])
    assert e.value.code == 2
    assert "-3" in capsys.readouterr().err


def test_demo_is_reproducible_and_writes_everything(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["demo", "--out", str(a), "--seed", "3", "--trials", "16"]) == 0
    assert main(["demo", "--out", str(b), "--seed", "3", "--trials", "16"]) == 0
    ja, jb = json.loads((a / "demo.json").read_text()), json.loads((b / "demo.json").read_text())
    ja.pop("figures"), jb.pop("figures")
    assert ja == jb  # one seed fixes every number
    for name in ("distractors.png", "scaling.png", "weights.png"):
        assert (a / "figures" / name).stat().st_size > 10_000
    sc = ja["scaling"]
    # Unscaled score variance tracks d; scaled stays near 1.
    for d, var_u, var_s in zip(sc["d"], sc["var_unscaled"], sc["var_scaled"]):
        assert 0.7 * d < var_u < 1.3 * d
        assert 0.7 < var_s < 1.3
    # Sparse normalisers use fewer keys than softmax, which uses all.
    r = ja["distractors"]["by_normalizer"]
    assert r["softmax"]["active"] == [n + 1 for n in ja["distractors"]["distractors"]]
    assert all(s <= t for s, t in zip(r["sparsemax"]["active"], r["softmax"]["active"]))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert list(tmp_path.iterdir()) == []
    write_json_atomic(target, {"ok": 1})
    assert json.loads(target.read_text()) == {"ok": 1}
