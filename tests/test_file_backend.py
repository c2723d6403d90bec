"""``backend = "file"``: the user's own channels (.npz, .mat, .h5), checked at the boundary, normalised per
drop or kept, with the common random numbers of the generated back-ends (round trip of `beamattn channels`)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from beamattn.wireless.channels.file import FileChannel, read_channel_file
from beamattn.wireless.export import export_channels
from beamattn.wireless.runner import EVAL_STREAM, TRAIN_STREAM, VALID_STREAM, channel_chunks, episodes
from beamattn.wireless.scenario import ScenarioError, check_memory, estimate_memory, load_scenario, parse_scenario
from wireless_fixtures import error_line, run_cli, tiny_doc, tiny_scenario, write_scenario


def file_doc(path, **channel) -> dict:
    """The tiny scenario reading its channels from ``path``."""
    doc = tiny_doc()
    doc["channel"] = {"backend": "file", "path": str(path), **channel}
    doc["channel"] = {k: v for k, v in doc["channel"].items() if k != "path" or v is not None}
    return doc


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """The tiny scenario's channels as `beamattn channels` writes them, and the arrays themselves."""
    folder = tmp_path_factory.mktemp("exported")
    out = export_channels(tiny_scenario(), folder / "ch.npz")
    with np.load(out) as f:
        return {"path": out, "arrays": {k: f[k] for k in f.files}}


def _write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _plain(exported, **changes) -> dict:
    """The exported arrays without the export's extras (meta, beams, beam_gains), with ``changes``."""
    a = {k: v for k, v in exported["arrays"].items() if k not in ("meta", "beams", "beam_gains")}
    a.update(changes)
    return {k: v for k, v in a.items() if v is not None}


# --------------------------------------------------------------------------- round trip


def test_round_trip_cli_run_gives_identical_metrics(tmp_path):
    # `beamattn channels` of a generated scenario, read back by the file back-end: the same drops and the same
    # measurement noise (3 drops in chunks of 2: a partial last chunk too), hence the same metrics, bit for bit.
    gen = write_scenario(tmp_path / "gen.toml", scenario={"policies": ["genie", "exhaustive", "best-of-set-b"]})
    assert run_cli(["channels", gen, "--out", str(tmp_path / "ch.npz")])[0] == 0
    doc = file_doc("ch.npz", normalize="none")  # relative to the scenario file
    doc["scenario"]["policies"] = ["genie", "exhaustive", "best-of-set-b"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "ch.npz").rename(tmp_path / "sub" / "ch.npz")
    fil = write_scenario(tmp_path / "sub" / "file.toml", doc)
    for scn, out in ((gen, "rg"), (fil, "rf")):
        rc, _, err = run_cli(["run", scn, "--out", str(tmp_path / out), "--no-figures"])
        assert rc == 0, err
    a = json.loads((tmp_path / "rg" / "metrics.json").read_text())
    b = json.loads((tmp_path / "rf" / "metrics.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert (tmp_path / "rg" / "steps.csv").read_text() == (tmp_path / "rf" / "steps.csv").read_text()
    files = b["channel_files"]
    assert Path(files["path"]) == (tmp_path / "sub" / "ch.npz").resolve()
    import hashlib

    assert files["sha256"] == hashlib.sha256((tmp_path / "sub" / "ch.npz").read_bytes()).hexdigest()


def test_round_trip_wideband_episodes_equal(tmp_path):
    wide = {"channel": {"num_subcarriers": 4, "subcarrier_spacing": 120e3}, "scenario": {"drops": 2}}
    gen = tiny_scenario(**wide)
    path = export_channels(gen, tmp_path / "w.npz")
    doc = file_doc(path, normalize="none")
    doc["scenario"]["drops"] = 2
    fil = parse_scenario(doc)
    assert fil.channel.num_subcarriers == 4
    pairs = zip(episodes(gen, gen.seed, 2), episodes(fil, fil.seed, 2))
    for (s0, e0, c0), (s1, e1, c1) in pairs:
        assert s0 == s1
        assert torch.equal(c0.h, c1.h) and torch.equal(c0.subcarrier_frequencies.double(), c1.subcarrier_frequencies)
        assert torch.equal(e0.reports_db, e1.reports_db) and torch.equal(e0.gain_use, e1.gain_use)


def test_seed_changes_noise_not_channels(exported):
    scn = parse_scenario(file_doc(exported["path"], normalize="none"))
    (_, e0, c0), = list(episodes(scn, 0, 2))
    (_, e1, c1), = list(episodes(scn, 1, 2))
    assert torch.equal(c0.h, c1.h)
    assert not torch.equal(e0.reports_db, e1.reports_db)


# --------------------------------------------------------------------------- other formats


def test_mat_and_h5_load_equal_to_npz(tmp_path, exported):
    import h5py
    import scipy.io

    arrays = _plain(exported, num_rows=np.int64(1), num_cols=np.int64(8), carrier_frequency=np.float64(28e9))
    npz = _write_npz(tmp_path / "c.npz", **arrays)
    mat = tmp_path / "c.mat"
    scipy.io.savemat(mat, arrays)
    h5 = tmp_path / "c.h5"
    with h5py.File(h5, "w") as f:
        for k, v in arrays.items():
            if np.ndim(v) == 0:
                f.attrs[k] = v  # scalars as root attributes
            else:
                f[k] = v
    ref = [s for _, s in channel_chunks(parse_scenario(file_doc(npz, normalize="none")), 0, 3)]
    for path in (mat, h5):
        scn = parse_scenario(file_doc(path, normalize="none"))
        assert scn.channel.carrier_frequency == 28e9
        got = [s for _, s in channel_chunks(scn, 0, 3)]
        for a, b in zip(ref, got):
            for name in ("h", "positions", "times", "los"):
                assert torch.equal(getattr(a, name), getattr(b, name)), (path.suffix, name)
    # And the exported file itself equals the generated channels (bit for bit, float64 positions and times).
    gen = [s for _, s in channel_chunks(tiny_scenario(), 3, 3)]
    for a, b in zip(gen, ref):
        assert torch.equal(a.h, b.h) and torch.equal(a.positions, b.positions) and torch.equal(a.times, b.times)


def test_mat_v73_is_refused_with_a_hint(tmp_path, exported):
    import h5py

    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:  # MATLAB v7.3 files are HDF5 with a 512-byte header
        f["h"] = np.zeros((1, 2, 8))
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")
        f.seek(124)
        f.write(b"\x00\x02IM")
    with pytest.raises(ScenarioError) as e:
        parse_scenario(file_doc(path))
    assert "v7.3" in str(e.value) and "-v7" in str(e.value)


# --------------------------------------------------------------------------- normalisation


def test_per_drop_normalisation_gives_unit_power_and_keeps_shape_within_drop(tmp_path, exported):
    a = _plain(exported)
    scale = np.array([1e-5, 3e-4, 2.0])[:, None, None]  # path loss of each drop (-100, -70, +6 dB)
    path = _write_npz(tmp_path / "pl.npz", **{**a, "h": (a["h"] * scale).astype(np.complex64)})
    scn = parse_scenario(file_doc(path))  # normalize = "per-drop" by default
    assert scn.channel.normalize == "per-drop"
    h = torch.cat([s.h for _, s in channel_chunks(scn, 0, 3)])  # [3, T, N]
    power = (h.abs().double() ** 2).mean((1, 2))  # [3] E|h_n|² per drop
    assert torch.allclose(power, torch.ones(3, dtype=torch.float64), rtol=1e-5)
    # Within a drop only one constant is removed: h_norm = h / rms(h), the same as normalising the unscaled h.
    ref = torch.from_numpy(a["h"]).to(torch.complex128)  # [3, T, N]
    rms = (ref.abs() ** 2).mean((1, 2), keepdim=True).sqrt()  # [3, 1, 1]
    assert torch.allclose(h.to(torch.complex128), ref / rms, rtol=1e-5, atol=1e-6)


def test_normalize_none_keeps_path_loss(tmp_path, exported):
    # Channels with path loss are used as stored: the genie SNR drops by the path loss (here 60 dB exactly).
    a = _plain(exported)
    path = _write_npz(tmp_path / "pl.npz", **{**a, "h": (a["h"] * 1e-3).astype(np.complex64)})
    kept = parse_scenario(file_doc(path, normalize="none"))
    base = parse_scenario(file_doc(exported["path"], normalize="none"))
    (_, ek, _), = [x for x in episodes(kept, 0, 2)]
    (_, eb, _), = [x for x in episodes(base, 0, 2)]
    ratio_db = 10 * torch.log10(ek.gain_use.double().max(-1).values / eb.gain_use.double().max(-1).values)
    assert torch.allclose(ratio_db, torch.full_like(ratio_db, -60.0), atol=1e-3)


# --------------------------------------------------------------------------- validation: one line each


def _bad(exported, tmp_path, **changes) -> str:
    path = _write_npz(tmp_path / "bad.npz", **_plain(exported, **changes))
    with pytest.raises(ScenarioError) as e:
        parse_scenario(file_doc(path), source="s.toml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("s.toml: channel:")
    return msg


def test_validation_errors_name_field_value_and_expectation(tmp_path, exported):
    a = exported["arrays"]
    h, t = a["h"], a["times"]
    cases = [
        ({"h": None}, ["'h' is missing", "expected h [B, T, (F,) N]"]),
        ({"h": h.real.copy()}, ["'h' has dtype float", "expected complex"]),
        ({"h": h[..., :4]}, ["N = 4", "expected N = 8", "num_cols 8"]),
        ({"h": h[0]}, ["'h' has shape [150, 8]", "expected [B, T, N]"]),
        ({"h": h[:, :1], "times": t[:1], "positions": None, "los": None}, ["T = 1", "expected T >= 2"]),
        ({"times": t[:-1]}, ["'times' has shape [149]", "expected [T] = [150]"]),
        ({"times": t[::-1].copy()}, ["not strictly increasing", "times[0]"]),
        ({"times": t ** 1.5}, ["not uniform", "expected one sample interval"]),
        ({"times": t * 1e4}, ["'times' interval", "sample_interval", "expected a number in"]),
        ({"positions": a["positions"][:, :, :2]}, ["'positions' has shape [3, 150, 2]", "expected [B, T, 3]"]),
        ({"los": a["los"][:, :10]}, ["'los' has shape [3, 10]", "expected [B, T] = [3, 150]"]),
        ({"subcarrier_frequencies": np.zeros(4)}, ["narrowband", "expected h [B, T, F, N]"]),
        ({"H": h}, ["unknown field 'H'", "did you mean 'h'"]),
        ({"num_cols": np.int64(16)}, ["num_cols = 16", "expected num_cols = 8"]),
        ({"carrier_frequency": np.float64(5.0)}, ["carrier_frequency", "5.0", "expected"]),
    ]
    for changes, parts in cases:
        msg = _bad(exported, tmp_path, **changes)
        for p in parts:
            assert p in msg, (changes.keys(), msg)
    wide = _plain(exported, h=h[:, :, None, :].repeat(2, 2))
    path = _write_npz(tmp_path / "w.npz", **wide)
    with pytest.raises(ScenarioError, match="'subcarrier_frequencies' is missing; expected \\[F\\] = \\[2\\]"):
        parse_scenario(file_doc(path))


def test_scenario_field_errors(tmp_path, exported):
    p = exported["path"]
    for channel, part in [({"normalize": "rms"}, "field 'normalize' = 'rms'; expected one of ('per-drop', 'none')"),
                          ({"path": str(tmp_path / "none.npz")}, "none.npz': file not found"),
                          ({"path": str(tmp_path / "x.csv")}, "expected a file name ending in one of"),
                          ({"path": ""}, "field 'path' is missing"),
                          ({"carrier_frequency": 3.5e9}, "'carrier_frequency' = 3.5e+09; expected 2.8e+10 Hz"),
                          ({"path": str(p), "patth": 1}, "unknown field 'patth'")]:
        with pytest.raises(ScenarioError) as e:
            parse_scenario(file_doc(**{"path": p, **channel}))
        assert part in str(e.value), str(e.value)
    doc = file_doc(p)
    doc["scenario"]["drops"] = 4
    with pytest.raises(ScenarioError, match="'drops' = 4 but file .* holds 3 drops; expected drops <= 3"):
        parse_scenario(doc)


def test_values_checked_when_read(tmp_path, exported):
    h = exported["arrays"]["h"].copy()
    h[1, 7, 2] = np.nan
    nan = parse_scenario(file_doc(_write_npz(tmp_path / "nan.npz", **_plain(exported, h=h))))
    with pytest.raises(ValueError, match=r"'h' has 1 NaN/Inf entries \(first at index \[1, 7, 2\]\); expected finite"):
        list(channel_chunks(nan, 0, 3))
    h = exported["arrays"]["h"].copy()
    h[2] = 0
    zero = parse_scenario(file_doc(_write_npz(tmp_path / "zero.npz", **_plain(exported, h=h))))
    with pytest.raises(ValueError, match="drop 2 is zero everywhere"):
        list(channel_chunks(zero, 0, 3))
    los = parse_scenario(file_doc(_write_npz(tmp_path / "los.npz", **_plain(
        exported, los=np.full((3, 150), 2)))))
    with pytest.raises(ValueError, match=r"'los' has values \[2\]; expected bool"):
        list(channel_chunks(los, 0, 3))


def test_cli_drops_beyond_file_is_one_line(tmp_path, exported):
    scn = write_scenario(tmp_path / "f.toml", file_doc(exported["path"]))
    rc, _, err = run_cli(["run", scn, "--out", str(tmp_path / "r"), "--drops", "5", "--no-figures"])
    assert rc == 2
    assert "'drops' = 5 but file" in error_line(err) and "expected drops <= 3" in error_line(err)
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- memory and training


def test_memory_estimate_counts_the_file(exported):
    scn = parse_scenario(file_doc(exported["path"]))
    (item,) = [i for i in estimate_memory(scn) if i.what.startswith("file channels")]
    assert item.bytes == 2 * 3 * 150 * 1 * 8 * 8  # [3 drops, 150, 1, 8] complex64, file + normalised copy
    with pytest.raises(ValueError, match="memory: the scenario needs about"):
        check_memory(scn, max_memory=item.bytes)


def test_training_reads_train_path_disjoint_from_evaluation(tmp_path, exported):
    from beamattn.wireless.train import train_selector

    a = _plain(exported)
    many = {k: (np.concatenate([v] * 7) if k in ("h", "positions", "los") else v) for k, v in a.items()}  # 21 drops
    many["h"] = many["h"] * np.arange(1, 22, dtype=np.float32)[:, None, None]  # tell the drops apart
    train = _write_npz(tmp_path / "train.npz", **many)
    doc = file_doc(exported["path"], normalize="none", train_path=str(train))
    doc["training"] = {"drops": 4, "steps": 3, "batch": 16, "lr": 0.01}  # 4 training + 16 validation <= 21
    scn = parse_scenario(doc)
    ch = FileChannel(scn.channel)
    data = read_channel_file(train, scn.array, "none")
    assert torch.equal(ch.drops(TRAIN_STREAM, 0, 2).h, data.h[:2])
    assert torch.equal(ch.drops(VALID_STREAM, 0, 2).h, data.h[[20, 19]])  # from the end: never a training drop
    assert torch.equal(ch.drops(EVAL_STREAM, 0, 2).h, torch.from_numpy(a["h"][:2]))
    log = train_selector(scn, tmp_path / "sel", progress=False)
    assert (tmp_path / "sel" / "selector.safetensors").is_file() and np.isfinite(log["valid_best"]["se"])
    doc["training"]["drops"] = 8  # 8 + 16 > 21
    with pytest.raises(ScenarioError, match=r"training 'drops' = 8 \(\+ 16 validation drops\) .* holds 21 drops"):
        parse_scenario(doc)


def test_training_without_train_path_is_refused(tmp_path, exported):
    scn = write_scenario(tmp_path / "f.toml", file_doc(exported["path"]))
    rc, _, err = run_cli(["train", scn, "--out", str(tmp_path / "t"), "--steps", "1"])
    assert rc == 2 and "field 'train_path' is not set" in error_line(err)


def test_load_scenario_resolves_paths_against_the_scenario_folder(tmp_path, exported, monkeypatch):
    (tmp_path / "a").mkdir()
    target = tmp_path / "a" / "ch.npz"
    target.write_bytes(Path(exported["path"]).read_bytes())
    write_scenario(tmp_path / "a" / "s.toml", file_doc("ch.npz"))
    monkeypatch.chdir(tmp_path)
    scn = load_scenario("a/s.toml")
    assert Path(scn.channel.path).resolve() == target.resolve()
    assert scn.to_dict()["channel"]["num_drops"] == 3


def test_example_street_file_and_scenario(tmp_path):
    # examples/make_channel_file.py (NumPy only, with path loss) read by examples/street.toml's tables.
    import importlib.util
    import tomllib

    root = Path(__file__).resolve().parent.parent / "examples"
    spec = importlib.util.spec_from_file_location("make_channel_file", root / "make_channel_file.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    arrays = mod.street_channels(drops=4, seed=0)
    gain_db = 10 * np.log10(np.mean(np.abs(arrays["h"]) ** 2))
    assert -110 < gain_db < -70  # free-space path loss at 15-60 m, 28 GHz: it must be removed
    mod.write(tmp_path / "s.npz", arrays)
    mod.write(tmp_path / "t.mat", mod.street_channels(drops=20, seed=1))
    doc = tomllib.loads((root / "street.toml").read_text())
    doc["channel"].update(path=str(tmp_path / "s.npz"), train_path=str(tmp_path / "t.mat"))
    doc["scenario"].update(drops=4, chunk_drops=4)
    doc["training"]["drops"] = 4
    scn = parse_scenario(doc)
    (_, ep, sample), = list(episodes(scn, 0, 4))
    power = (sample.h.abs().double() ** 2).mean((1, 2))  # [4] per drop: normalised
    assert torch.allclose(power, torch.ones(4, dtype=torch.float64), rtol=1e-5)
    assert bool(sample.los[:, 0].all())  # the example's LoS is present at the start of every drop
    train = torch.cat([s.h for _, s in channel_chunks(scn, 0, 4, stream=TRAIN_STREAM)])
    assert train.shape == (4, 250, 16)


def test_sweep_over_file_channels_equals_the_generated_sweep(tmp_path, exported):
    # Paths in the base scenario are relative to it, not to the sweep file or the working directory; each cell
    # reads the same exported drops and draws the same noise as the generated sweep (seed 3 = the export's).
    from beamattn.wireless.sweep import load_sweep, run_sweep

    (tmp_path / "scn").mkdir()
    (tmp_path / "scn" / "ch.npz").write_bytes(Path(exported["path"]).read_bytes())
    write_scenario(tmp_path / "scn" / "file.toml", file_doc("ch.npz", normalize="none"))
    write_scenario(tmp_path / "scn" / "gen.toml", tiny_doc())
    sums = {}
    for kind in ("file", "gen"):
        (tmp_path / f"{kind}.sweep.toml").write_text(
            f'[sweep]\nname = "{kind}"\nbase = "scn/{kind}.toml"\nseeds = [3]\npolicies = ["genie", "exhaustive"]\n'
            '[grid]\n"measurement.snr_db" = [0.0, 10.0]\n')
        res = run_sweep(load_sweep(tmp_path / f"{kind}.sweep.toml"), tmp_path / kind, progress=False, figures=False)
        sums[kind] = [c["results"] for c in res.summary["cells"]]
    assert sums["file"] == sums["gen"] and len(sums["file"]) == 2


@pytest.mark.slow  # ~20 s on 2 loaded cores; the selector's training on file channels runs in the default suite
def test_cli_trains_a_learned_baseline_on_file_channels(tmp_path, exported):
    a = _plain(exported)
    many = {k: (np.concatenate([v] * 7) if k in ("h", "positions", "los") else v) for k, v in a.items()}  # 21 drops
    _write_npz(tmp_path / "train.npz", **many)
    doc = file_doc(exported["path"], train_path="train.npz")
    doc["training"] = {"drops": 4, "steps": 2, "batch": 16, "lr": 0.01}
    scn = write_scenario(tmp_path / "f.toml", doc)
    rc, _, err = run_cli(["train", scn, "--model", "mlp", "--out", str(tmp_path / "m")])
    assert rc == 0, err
    assert (tmp_path / "m" / "mlp.safetensors").is_file()
    rc, _, err = run_cli(["run", scn, "--out", str(tmp_path / "r"), "--no-figures", "--policies", "genie,mlp",
                          "--policy-checkpoint", f"mlp={tmp_path / 'm' / 'mlp.safetensors'}"])
    assert rc == 0, err


def test_pickled_and_damaged_files_are_one_line(tmp_path, exported):
    a = _plain(exported)
    obj = np.empty(150, dtype=object)
    obj[:] = [float(x) for x in a["times"]]
    path = tmp_path / "obj.npz"
    np.savez(path, **{**a, "times": obj})  # an object array: would need unpickling
    with pytest.raises(ScenarioError, match=r"field 'times' cannot be read \(ValueError: Object arrays cannot be "
                                            r"loaded when allow_pickle=False.*expected a numeric array"):
        parse_scenario(file_doc(path))
    broken = tmp_path / "broken.npz"
    broken.write_bytes(Path(exported["path"]).read_bytes()[:200])
    with pytest.raises(ScenarioError, match=r"broken.npz' cannot be read as .npz \(BadZipFile"):
        parse_scenario(file_doc(broken))


def test_file_channels_on_the_simulated_device_give_the_cpu_numbers(exported):
    # The drops are read on the CPU and moved once per chunk; no implicit transfer, the CPU's numbers.
    from simdevice import SimulatedCuda

    from beamattn.wireless.runner import run_scenario

    scn = parse_scenario(file_doc(exported["path"]))
    names = ["genie", "mrt", "exhaustive", "best-of-set-b", "attention-untrained"]
    ref = run_scenario(scn, None, policies=names, progress=False, figures=False)
    with SimulatedCuda() as sim:
        res = run_scenario(scn, None, policies=names, device="cuda:0", progress=False, figures=False)
    assert not sim.implicit, sim.report()
    assert res.summary == ref.summary


def test_sweep_task_ids_follow_the_channel_files_content(tmp_path, exported):
    # A regenerated channel file at the same path is a new task: --resume never reuses results of old data.
    from beamattn.wireless.sweep import parse_sweep

    path = tmp_path / "ch.npz"
    path.write_bytes(Path(exported["path"]).read_bytes())
    sweep_doc = {"sweep": {"name": "s", "base": "-", "seeds": [0], "policies": ["genie"]},
                 "grid": {"measurement.snr_db": [0.0]}}

    def ids():
        return [t for t, _, _ in parse_sweep(sweep_doc, base_data=file_doc(path)).tasks()]

    first = ids()
    assert ids() == first  # stable
    a = _plain(exported)
    _write_npz(path, **{**a, "h": (a["h"] * 2).astype(np.complex64)})
    assert ids() != first
    gen = parse_sweep(sweep_doc, base_data=tiny_doc())  # other back-ends: the id of the document alone
    import hashlib

    from beamattn.wireless.sweep import _canonical

    (tid, cell, seed), = gen.tasks()
    blob = {"scenario": cell.data, "params": cell.params, "seed": seed, "policies": ["genie"]}
    assert tid == hashlib.sha256(_canonical(blob).encode()).hexdigest()[:20]


def test_channels_force_refuses_to_overwrite_the_file_its_scenario_reads(tmp_path, exported):
    # `beamattn channels` of a file scenario into the very file it reads: --force would destroy the input.
    import shutil

    shutil.copy(exported["path"], tmp_path / "ch.npz")
    scn = write_scenario(tmp_path / "f.toml", file_doc("ch.npz"))
    before = (tmp_path / "ch.npz").read_bytes()
    rc, _, err = run_cli(["channels", scn, "--out", str(tmp_path / "ch.npz"), "--force"])
    assert rc != 0
    assert "is the input" in error_line(err)
    assert (tmp_path / "ch.npz").read_bytes() == before
