"""Every tutorial runs from start to end (``make tutorials``; small settings: ``BEAMATTN_TUTORIAL_SMALL=1``).

Each tutorial is a jupytext percent-format script in ``tutorials/``, run here as a script in a fresh process
from the repository root, writing under a temporary folder. The Keras tutorial runs in the TensorFlow
environment ``.venv-tf`` (``make tutorials`` builds it) and calls the torch environment's ``beamattn``.
The runs are marked slow (about 15-60 s each on 2 cores): the default suite only checks their form.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"
NEEDS_TF = {"07_keras_export.py"}


def test_the_seven_tutorials_exist_in_jupytext_percent_form():
    assert [int(p.name[:2]) for p in TUTORIALS] == list(range(1, 8)), [p.name for p in TUTORIALS]
    for path in TUTORIALS:
        text = path.read_text()
        ast.parse(text)  # a valid Python script
        assert "format_name: percent" in text and "# %% [markdown]" in text, f"{path.name}: not jupytext percent"
        title = re.search(r"^# # (\d+)\. \S", text, flags=re.M)
        assert title and int(title.group(1)) == int(path.name[:2]), f"{path.name}: title '# N. ...' missing"
        assert "BEAMATTN_TUTORIAL_SMALL" in text, f"{path.name}: no small settings for CI"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_start_to_end(path: Path, tmp_path: Path):
    python = sys.executable
    if path.name in NEEDS_TF:
        if not TF_PYTHON.exists():
            pytest.skip("needs the TensorFlow environment .venv-tf (make tutorials builds it)")
        python = str(TF_PYTHON)
    env = {**os.environ, "BEAMATTN_TUTORIAL_SMALL": "1", "BEAMATTN_TUTORIAL_OUT": str(tmp_path),
           "MPLBACKEND": "Agg", "BEAMATTN_TORCH_BIN": str(Path(sys.executable).parent / "beamattn")}
    start = time.monotonic()
    proc = subprocess.run([python, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, f"{path.name} failed after {elapsed:.0f} s:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    print(f"{path.name}: {elapsed:.1f} s")
