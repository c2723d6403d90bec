"""Smoke test of scripts/bench_gpu.py: the CPU smoke run writes the expected JSON, and without CUDA the
default run is skipped with exit code 0 and a JSON that says so (no timings are checked)."""

import json

import pytest
import torch
from script_loader import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_gpu")


def test_cpu_smoke_run_writes_expected_json(bench, tmp_path, capsys):
    out = tmp_path / "bench_gpu.json"
    assert bench.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| case | candidate | reference | ratio |" in printed
    data = json.loads(out.read_text())
    assert data["benchmark"] == "bench_gpu" and data["skipped"] is False and data["quick"] is True
    assert data["environment"]["device"] == "cpu" and data["environment"]["device_name"] == "cpu"
    cases = [r["case"] for r in data["rows"]]
    assert any("geometric" in c for c in cases) and any("sionna CDL-C" in c for c in cases)
    assert sum("selector decisions/s (learned" in c for c in cases) == 2
    attn = [r for r in data["rows"] if r["unit"] == "ms/call"]
    assert {r["case"].split(" vs SDPA")[0] for r in attn} == {"attend", "attend, return_weights"}
    assert {r["case"].rsplit(", ", 1)[1] for r in attn} == {"float32", "bfloat16"}
    for r in data["rows"]:
        rate = r.get("candidate_rate", r.get("candidate_ms"))
        assert rate > 0
    assert all(r["ratio"] > 0 for r in attn)


def test_without_cuda_the_run_is_skipped(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "skip.json"
    assert bench.main(["--out", str(out)]) == 0
    assert "bench_gpu: skipped: no CUDA device" in capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["skipped"] is True and data["rows"] == [] and "no CUDA device" in data["reason"]


def test_bad_device_is_an_error(bench, tmp_path, capsys):
    assert bench.main(["--device", "tpu", "--out", str(tmp_path / "x.json")]) == 2
    assert "'--device' = 'tpu' is not a device" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_quick_run_names_the_gpu(bench, tmp_path):
    out = tmp_path / "gpu.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["environment"]["device_name"] == torch.cuda.get_device_name()
    assert all(r["reference_rate"] for r in data["rows"] if r["unit"] != "ms/call")  # CPU reference measured
