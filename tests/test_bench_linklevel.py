"""Smoke test of scripts/bench_linklevel.py: quick mode writes the expected JSON, and the chain written
directly with Sionna blocks gives the same block errors as ``LinkChain.errors`` (outputs, not timings)."""

import json
import math

import pytest
import torch
from script_loader import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_linklevel")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core machine 2-thread ops wait for each other (no timings are checked);
    the thread count is restored for the other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quick_run_writes_expected_json(bench, tmp_path, capsys):
    out = tmp_path / "bench_linklevel.json"
    assert bench.main(["--quick", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| decoder |" in printed and "codewords/s" in printed and "SelectorBlock" in printed

    data = json.loads(out.read_text())
    assert data["benchmark"] == "bench_linklevel" and data["mode"] == "quick"
    for key in ("environment", "config", "loadavg_start", "loadavg_end", "loadavg_max", "total_time_s",
                "throughput", "stages", "overhead", "tables_markdown"):
        assert key in data, key
    assert data["environment"]["threads"] == 1

    thr = data["throughput"]
    assert {(r["modulation"], r["estimator"]) for r in thr} == {(m, e) for m in bench.MODULATIONS
                                                                 for e in ("ls", "lmmse", "perfect")}
    for r in thr:
        assert r["codewords_per_s"] > 0 and r["ms_per_batch"] > 0 and 0 <= r["bler"] <= 1
        assert r["k"] < r["n"] and r["batch"] == 8

    assert [r["modulation"] for r in data["stages"]] == list(bench.MODULATIONS)
    for r in data["stages"]:
        assert set(r["stages"]) == set(bench.STAGES)
        assert all(s["ms"] >= 0 for s in r["stages"].values())
        assert math.isclose(sum(s["pct"] for s in r["stages"].values()), 100.0, rel_tol=1e-6)

    kinds = [r["kind"] for r in data["overhead"]]
    assert kinds.count("chain") >= 2 and kinds.count("selector") == 1
    for r in data["overhead"]:
        assert r["outputs_equal"] is True, r["case"]
        assert r["ratio"] > 0 and math.isfinite(r["ratio"]) and r["target"] == pytest.approx(1.10)
        assert isinstance(r["pass"], bool) and len(r["ratios"]) == len(r["cand_times_s"]) == len(r["ref_times_s"])
    chain_rows = [r for r in data["overhead"] if r["kind"] == "chain"]
    assert {r["estimator"] for r in chain_rows} == {"ls", "perfect"}
    assert all(r["block_errors"] == r["block_errors_direct"] for r in chain_rows)


@pytest.mark.parametrize("estimator", ["ls", "perfect"])
def test_direct_chain_gives_the_same_block_errors(bench, estimator):
    from beamattn.linklevel.chain import LinkChain

    f, batch, seed = 24, 32, 3
    bps, rate, snr = bench.MODULATIONS["QPSK r=1/2"]
    chain = bench._seeded(lambda: LinkChain(bench._link_config("QPSK r=1/2", estimator, f)), seed)
    direct = bench._seeded(lambda: bench.DirectChain(bps, rate, f, estimator), seed)
    assert (direct.k, direct.n) == (chain.k, chain.n)
    h = bench._channels(chain, batch, seed)
    assert h.shape == (batch, 14, f) and h.dtype == torch.complex64
    assert 0.5 < h.abs().pow(2).mean().item() < 2.0  # E|h|² = 1
    no = bench._no(snr)
    for s in (11, 12):
        e_chain = chain.errors(h, no, seed=s)
        e_direct = direct.errors(h, no, seed=s)
        assert e_chain.shape == e_direct.shape == (batch,)
        assert torch.equal(e_chain, e_direct)
        assert 0 < int(e_chain.sum()) < batch  # waterfall region: the comparison is not trivially all-0/all-1
