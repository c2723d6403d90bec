"""``--device``: the resolver, the CLI errors, and "tensors stay on the device" on a simulated CUDA device.

Without a GPU, the main paths run on :mod:`simdevice`'s simulated ``cuda:0`` (CPU kernels, CUDA's
device rules): any tensor left on the CPU that meets a device tensor raises, hidden transfers and host
syncs are recorded, and the numbers must equal a CPU run's exactly. The tests marked ``cuda`` run the
same paths on a real GPU and compare with the CPU within float32 tolerance; they are skipped here.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from simdevice import SIM, SimTensor, SimulatedCuda
from wireless_fixtures import tiny_scenario

from beamattn.cli import main
from beamattn.device import describe_device, resolve_device

ROOT = Path(__file__).resolve().parent.parent
ALL_POLICIES = ["genie", "mrt", "exhaustive", "best-of-set-b", "stale", "hierarchical", "random", "uniform",
                "attention", "attention-untrained"]
COMPUTING = {  # subcommand -> arguments it needs besides --device (the device is checked before anything runs)
    "run": ["x.toml", "--out", "o"], "train": ["x.toml", "--out", "o"], "channels": ["x.toml", "--out", "o.npz"],
    "sweep": ["x.toml", "--out", "o"], "linklevel": ["x.toml", "--out", "o"], "experiment": ["all"], "demo": [],
}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def no_cuda(monkeypatch):
    """Behave like a machine without CUDA, even on one that has it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def sim_names(monkeypatch):
    """``describe_device`` asks the CUDA driver for the GPU's name: give the simulated one a name."""
    import beamattn.demo
    import beamattn.experiments.registry
    import beamattn.wireless.runner
    import beamattn.wireless.train

    for mod in (beamattn.demo, beamattn.experiments.registry, beamattn.wireless.runner, beamattn.wireless.train):
        monkeypatch.setattr(mod, "describe_device", lambda d: "cuda:0 (simulated)" if torch.device(d).type == "cuda"
                            else str(torch.device(d)))


# --------------------------------------------------------------------------- resolve_device


def test_resolve_device_accepts_cpu_and_concrete_cuda(monkeypatch):
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert describe_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)  # explicit, so tensor.device == device holds
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"^'--device' = 'cuda:2' but this machine has 2 CUDA device\(s\); "
                                         r"expected cuda:0 to cuda:1$"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("text", ["cuda", "cuda:0", "CUDA:1"])
def test_resolve_device_without_cuda_says_so(no_cuda, text):
    with pytest.raises(ValueError) as e:
        resolve_device(text)
    assert str(e.value) == (f"'--device' = {text!r} but no CUDA device is available "
                            "(torch.cuda.is_available() is False); use --device cpu")


@pytest.mark.parametrize("text", ["tpu", "gpu", "cuda:", "cuda:x", "cuda:-1", "", "cpu:0 "])
def test_resolve_device_rejects_unknown_names(text):
    with pytest.raises(ValueError, match=r"^'--device' = .* is not a device; expected cpu, cuda, cuda:N or mps$"):
        resolve_device(text)


def test_resolve_device_without_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^'--device' = 'mps' but no MPS device is available"):
        resolve_device("mps")


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("command", sorted(COMPUTING))
def test_cli_device_cuda_without_cuda_exits_2_with_one_line(no_cuda, capsys, command):
    assert main([command, *COMPUTING[command], "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err == (f"beamattn {command}: error: '--device' = 'cuda' but no CUDA device is available "
                   "(torch.cuda.is_available() is False); use --device cpu\n")


@pytest.mark.parametrize("command", sorted(COMPUTING))
def test_cli_bad_device_exits_2_with_one_line(capsys, command):
    assert main([command, *COMPUTING[command], "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err == (f"beamattn {command}: error: '--device' = 'tpu' is not a device; expected cpu, cuda, cuda:N "
                   "or mps\n")


def test_cli_run_on_cpu_records_the_device(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(ROOT / "scenarios" / "vehicular-60.toml"), "--out", str(out), "--drops", "2",
                 "--policies", "genie,exhaustive", "--no-figures", "--device", "cpu"]) == 0
    assert json.loads((out / "metrics.json").read_text())["device"] == "cpu"


# --------------------------------------------------------------------------- the simulated device itself


def test_simulated_device_applies_cuda_rules():
    with SimulatedCuda() as sim:
        x = torch.zeros(3, device="cuda")
        assert isinstance(x, SimTensor) and x.device == SIM
        y = torch.ones(3)  # forgot device=
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            x + y
        assert isinstance(x + torch.tensor(2.0), SimTensor)  # a 0-dim CPU tensor is fine, as on CUDA
        with pytest.raises(TypeError, match="Use Tensor.cpu"):
            x.numpy()
        assert type(x.cpu()) is torch.Tensor and x.cpu().numpy().tolist() == [0, 0, 0]
        x[torch.tensor([0, 1])]  # CUDA allows CPU indices: a hidden transfer
        float(x.sum())
        z = y.to(x.device)
        assert isinstance(z, SimTensor)
    assert len(sim.implicit) == 1 and len(sim.syncs) == 1 and sum(sim.uploads.values()) == 1


# --------------------------------------------------------------------------- main paths on the simulated device


def _scenario(chunk: int):
    # Two chunks; hierarchical needs wide beams (num_wide = 4 in the tiny scenario).
    return tiny_scenario(scenario={"drops": 2 * chunk, "chunk_drops": chunk})


def _run(scn, device, checkpoint=None):
    from beamattn.wireless.runner import run_scenario

    return run_scenario(scn, None, policies=ALL_POLICIES, device=device, checkpoint=checkpoint, progress=False,
                        figures=False)


def test_run_stays_on_device_with_cpu_numbers(sim_names, tmp_path):
    from beamattn.wireless.runner import run_scenario

    scn = _scenario(2)
    ref = _run(scn, "cpu")
    with SimulatedCuda() as sim:
        res = run_scenario(scn, tmp_path / "sim", policies=ALL_POLICIES, device="cuda:0", progress=False,
                           figures=True)
    assert not sim.implicit, sim.report()
    assert res.summary == ref.summary  # the same kernels: the same numbers, bit for bit
    assert json.loads((tmp_path / "sim" / "metrics.json").read_text())["device"] == "cuda:0 (simulated)"
    # Host syncs and transfers are per chunk, never per drop or per decision: with twice the drops per
    # chunk (same number of chunks) they are the same. (Sparsemax's convergence test is per Newton step.)
    with SimulatedCuda() as sim2:
        _run(_scenario(4), "cuda:0")
    for a, b in ((sim.syncs, sim2.syncs), (sim.uploads, sim2.uploads), (sim.downloads, sim2.downloads)):
        a = {k: v for k, v in a.items() if "sparsemax.py" not in k}
        b = {k: v for k, v in b.items() if "sparsemax.py" not in k}
        assert a == b, sim.report() + "\n---\n" + sim2.report()


def test_train_then_run_on_device(sim_names, tmp_path):
    from safetensors.torch import load_file

    from beamattn.wireless.train import train_selector

    scn = _scenario(2)
    torch.manual_seed(0)
    ref = train_selector(scn, tmp_path / "cpu", progress=False, steps=12)
    with SimulatedCuda() as sim:
        res = train_selector(scn, tmp_path / "sim", progress=False, steps=12, device="cuda:0")
    assert not sim.implicit, sim.report()
    assert res["device"] == "cuda:0 (simulated)" and ref["device"] == "cpu"
    assert res["log"] == ref["log"] and res["valid_best"] == ref["valid_best"]
    a, b = load_file(tmp_path / "cpu" / "selector.safetensors"), load_file(tmp_path / "sim" / "selector.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(type(t) is torch.Tensor for t in b.values())  # saved from CPU copies
    # A checkpoint written on one device evaluates on another.
    ckpt = str(tmp_path / "sim" / "selector.safetensors")
    ref_run = _run(scn, "cpu", checkpoint=ckpt)
    with SimulatedCuda() as sim:
        run = _run(scn, "cuda:0", checkpoint=ckpt)
    assert not sim.implicit, sim.report()
    assert run.summary == ref_run.summary


def test_given_cpu_selector_moves_to_the_episode_device(sim_names):
    from beamattn.wireless.policies import AttentionPolicy
    from beamattn.wireless.runner import episodes, make_codebooks
    from beamattn.wireless.selector import AttentionSelector

    scn = _scenario(2)
    narrow, _ = make_codebooks(scn)
    with SimulatedCuda() as sim:
        _, ep, _ = next(episodes(scn, 0, 2, device="cuda:0"))
        measured = torch.zeros(narrow.num_beams, dtype=torch.bool)
        measured[ep.set_b.cpu()] = True
        sel = AttentionSelector(dataclasses.replace(scn.selector, learned=True), narrow.beams, measured)  # on the CPU
        dec = AttentionPolicy(config=sel.config, selector=sel).decide(ep)
        assert isinstance(dec.beams, SimTensor) and sel.query.device == SIM
    assert not sim.implicit, sim.report()


def test_channels_export_on_device(tmp_path):
    from beamattn.wireless.export import export_channels

    scn = _scenario(2)
    export_channels(scn, tmp_path / "cpu.npz")
    with SimulatedCuda() as sim:
        export_channels(scn, tmp_path / "sim.npz", device="cuda:0")
    assert not sim.implicit, sim.report()
    a, b = np.load(tmp_path / "cpu.npz"), np.load(tmp_path / "sim.npz")
    assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_sweep_task_on_device():
    from beamattn.wireless.sweep import run_task

    doc = {"scenario": {"name": "t", "drops": 2, "chunk_drops": 2},
           "channel": {"speed_kmh": 30, "duration": 0.2, "sample_interval": 0.002}, "array": {"num_cols": 8},
           "codebook": {"oversampling": 2}, "measurement": {"set_b": 4, "history": 2}, "selector": {"history": 2}}
    pols = ["genie", "exhaustive", "attention-untrained"]
    ref = run_task(doc, 1, pols)
    with SimulatedCuda() as sim:
        got = run_task(doc, 1, pols, "<test>", "cuda:0")
    assert not sim.implicit, sim.report()
    assert got == ref  # the same result format and numbers


def test_demo_and_wireless_experiment_on_device(sim_names, tmp_path):
    from beamattn.demo import distractor_experiment, example_weights, scaling_experiment
    from beamattn.experiments import run_experiment

    def demo(device):
        g = torch.Generator().manual_seed(0)
        return (distractor_experiment(g, 8, device=device), scaling_experiment(g, 8, device=device),
                example_weights(g, device=device))

    ref = demo("cpu")
    with SimulatedCuda() as sim:
        got = demo("cuda:0")
        r = run_experiment("beam-selector-entropy", tmp_path, small=True, device="cuda:0")
        other = run_experiment("permutation-equivariance", tmp_path, small=True, device="cuda:0")
    assert not sim.implicit, sim.report()
    assert got == ref
    assert r.device == "cuda:0 (simulated)" and other.device == "cpu"  # experiments without a device stay on the CPU
    assert json.loads((tmp_path / "beam-selector-entropy" / "result.json").read_text())["device"] == r.device


# --------------------------------------------------------------------------- a real GPU (skipped without one)


@cuda
def test_cuda_run_matches_cpu():
    # Float32 kernels differ between devices in the last bits. The truth (genie and MRT SNRs) depends on
    # the channels only: it agrees closely. A report that lands on a 1 dB quantisation boundary, or a
    # near-tie between two beams, can flip a discrete choice: the policies' KPIs agree approximately.
    scn = _scenario(4)
    ref, got = _run(scn, "cpu"), _run(scn, resolve_device("cuda"))
    for pol in ALL_POLICIES:
        g, r = got.summary[pol], ref.summary[pol]
        for key in ("genie_db", "mrt_db"):
            assert g[key]["mean"] == pytest.approx(r[key]["mean"], rel=1e-4, abs=1e-4), (pol, key)
        exact = pol in ("genie", "mrt", "uniform", "random")  # no measurement enters their choice
        for key, tol in (("snr_db", 0.5), ("se", 0.1), ("top1", 0.15), ("within_1db", 0.15)):
            t = 1e-3 if exact else tol
            assert g[key]["mean"] == pytest.approx(r[key]["mean"], abs=t), (pol, key)


@cuda
def test_cuda_train_and_export_match_cpu(tmp_path):
    from beamattn.wireless.export import export_channels
    from beamattn.wireless.train import train_selector

    scn = _scenario(2)
    dev = resolve_device("cuda")
    ref = train_selector(scn, tmp_path / "cpu", progress=False, steps=12)
    got = train_selector(scn, tmp_path / "gpu", progress=False, steps=12, device=dev)
    assert got["device"].startswith("cuda:")
    assert got["valid_best"]["se"] == pytest.approx(ref["valid_best"]["se"], rel=0.02)
    export_channels(scn, tmp_path / "cpu.npz")
    export_channels(scn, tmp_path / "gpu.npz", device=dev)
    a, b = np.load(tmp_path / "cpu.npz"), np.load(tmp_path / "gpu.npz")
    assert np.array_equal(a["positions"], b["positions"])  # drawn on the CPU: the same geometry
    np.testing.assert_allclose(b["h"], a["h"], atol=1e-4)
    np.testing.assert_allclose(b["beam_gains"], a["beam_gains"], rtol=1e-3, atol=1e-4)


@cuda
def test_cuda_sionna_cdl_on_device():
    from beamattn.wireless.runner import run_scenario
    from beamattn.wireless.scenario import load_scenario

    scn = load_scenario(ROOT / "scenarios" / "sionna-cdl-c.toml")
    scn.drops = scn.chunk_drops = 2
    pols = ["genie", "exhaustive", "attention-untrained"]
    ref = run_scenario(scn, None, policies=pols, progress=False, figures=False)
    got = run_scenario(scn, None, policies=pols, device=resolve_device("cuda"), progress=False, figures=False)
    # Sionna draws its CDL coefficients from its own per-device generators: the channels differ, so only
    # the statistics can be compared (genie >= exhaustive on both).
    assert set(got.summary) == set(pols)
    assert got.summary["genie"]["snr_db"]["mean"] >= got.summary["exhaustive"]["snr_db"]["mean"]
    assert ref.summary["genie"]["snr_db"]["mean"] >= ref.summary["exhaustive"]["snr_db"]["mean"]
