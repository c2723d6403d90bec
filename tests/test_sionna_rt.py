"""The ray-traced back-end (backend = "sionna-rt"): equality with Sionna RT's own paths.cfr at the traced
positions, the array frame and element order, Doppler evolution against fresh traces, the cache (hit equals
a fresh trace, corruption detected and recomputed), tracks with no-path positions excluded, the LoS flag, and
one-line validation errors.

Tests that trace are marked ``raytracing`` and skipped with the reason when Sionna RT cannot run here
(sionna-rt missing, or only Debian's libLLVM 15: Dr.Jit would abort the process). They use the small
``simple_street_canyon`` scene, an 8-element array and few samples per source, solving in this process.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from beamattn.wireless.arrays import AntennaArray, steering_vector
from beamattn.wireless.channels.rt_cache import CorruptCacheWarning, TraceCache, cache_key
from beamattn.wireless.channels.sionna_rt import (
    SHIPPED_SCENES,
    SionnaRTChannel,
    SionnaRTConfig,
    evolve_trace,
    rt_ready,
)
from beamattn.wireless.scenario import ScenarioError, load_scenario, parse_scenario

READY, WHY = rt_ready()
needs_rt = [pytest.mark.raytracing, pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")]
ROOT = Path(__file__).resolve().parents[1]
SPEED_OF_LIGHT = 299792458.0


def canyon_config(**kw) -> SionnaRTConfig:
    """A small scene: BS at 20 m looking down the canyon; 1 m tracks at 5 m/s traced every 0.5 m, i.e. at
    samples 0, 10 and 20 of 21 (10 ms apart)."""
    base = dict(scene="simple_street_canyon", array=AntennaArray(1, 8), carrier_frequency=28e9, bs_x=-30.0,
                bs_y=0.0, bs_z=20.0, look_at_x=0.0, look_at_y=0.0, look_at_z=1.5, speed=5.0, duration=0.21,
                sample_interval=0.01, trace_spacing=0.5, min_distance=10.0, max_distance=60.0,
                sector_half_width_deg=60.0, samples_per_src=10000, normalization="none", subprocess=False)
    base.update(kw)
    return SionnaRTConfig(**base)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rt-cache")


@pytest.fixture(scope="module")
def canyon(cache_dir):
    """A wideband (4 subcarriers) channel and two drops of it."""
    ch = SionnaRTChannel(canyon_config(num_subcarriers=4, subcarrier_spacing=1e6), cache=TraceCache(cache_dir))
    return ch, ch.generate(2, seed=3)


def fresh_paths(cfg: SionnaRTConfig, positions: np.ndarray, velocities: np.ndarray):
    """Sionna RT's own solve of ``positions [K, 3]`` (scene frame) with the back-end's settings."""
    import sionna.rt as rt

    from beamattn.wireless.channels.sionna_rt import scene_file

    scene = rt.load_scene(str(scene_file(cfg.scene)))
    scene.frequency = cfg.carrier_frequency
    scene.tx_array = rt.PlanarArray(num_rows=cfg.array.num_rows, num_cols=cfg.array.num_cols,
                                    vertical_spacing=cfg.array.spacing_v, horizontal_spacing=cfg.array.spacing_h,
                                    pattern=cfg.antenna_pattern, polarization="V")
    scene.rx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
    scene.add(rt.Transmitter("bs", position=[cfg.bs_x, cfg.bs_y, cfg.bs_z],
                             look_at=[cfg.look_at_x, cfg.look_at_y, cfg.look_at_z]))
    for k, (p, v) in enumerate(zip(positions, velocities)):
        scene.add(rt.Receiver(f"r{k}", position=p.tolist(), velocity=v.tolist()))
    paths = rt.PathSolver()(scene, max_depth=cfg.max_depth, samples_per_src=cfg.samples_per_src, los=True,
                            specular_reflection=True, diffuse_reflection=False, refraction=False,
                            diffraction=cfg.diffraction, seed=cfg.solver_seed)
    return scene, paths


def corr(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x.conj() * y).sum().abs() / (x.norm() * y.norm()))


# ---------------------------------------------------------------------------------------------------------------
# without the ray tracer
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, expected", [
    ("scene", "atlantis", "Mitsuba XML"),
    ("scene", "/no/such/scene.xml", "Mitsuba XML"),
    ("trace_spacing", 0.75, "(0, 0.5] m"),
    ("trace_spacing", 0.0, "(0, 0.5] m"),
    ("max_depth", -1, "an integer in [0, 10]"),
    ("samples_per_src", 10.5, "an integer"),
    ("antenna_pattern", "omni", "'tr38901'"),
    ("normalization", "per-link", "'per-drop'"),
    ("diffraction", 1, "true or false"),
    ("tilt_deg", 120.0, "[-90, 90] degrees"),
    ("max_distance", 5.0, "> min_distance"),
    ("look_at_y", None, "all three"),
    ("sector_half_width_deg", 0.0, "(0, 180] degrees"),
])
def test_config_errors_name_the_field(field, value, expected):
    with pytest.raises(ValueError) as e:
        canyon_config(**{field: value})
    msg = str(e.value)
    assert "\n" not in msg and f"field '{field}'" in msg and expected in msg and repr(value) in msg


def test_scenario_file_errors_are_one_line(tmp_path):
    text = (ROOT / "scenarios" / "munich-vehicular.toml").read_text()
    for old, new, field in [("trace_spacing = 0.5", "trace_spacing = 2.0", "trace_spacing"),
                            ('scene = "munich"', 'scene = "munchen"', "scene"),
                            ("max_depth = 3", "max_dept = 3", "max_dept")]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text.replace(old, new))
        with pytest.raises(ScenarioError) as e:
            load_scenario(bad)
        assert "\n" not in str(e.value) and field in str(e.value) and str(bad) in str(e.value)


@pytest.mark.parametrize("name", ["munich-vehicular", "etoile-pedestrian", "florence-vehicular"])
def test_shipped_scenarios_load(name):
    scn = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    assert scn.backend == "sionna-rt" and scn.channel.num_traces >= 2
    # traced at most trace_spacing apart along the whole track
    c = scn.channel
    assert c.speed * (c.num_time_steps - 1) * c.sample_interval / (c.num_traces - 1) <= c.trace_spacing + 1e-12


def test_importing_beamattn_does_not_import_the_ray_tracer():
    """`make demo` stays free of the ray tracer: importing beamattn, loading a ray-traced scenario and
    building its channel object load neither sionna.rt nor Mitsuba nor Dr.Jit."""
    code = ("import sys, beamattn\n"
            "from beamattn.wireless.scenario import load_scenario\n"
            f"scn = load_scenario({str(ROOT / 'scenarios' / 'munich-vehicular.toml')!r})\n"
            "from beamattn.wireless.channels import sionna_rt\n"
            "print(sorted(m for m in ('sionna.rt', 'mitsuba', 'drjit') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_sionna_package_imports_rt_lazily():
    """sionna-rt and sionna-no-rt both ship sionna/__init__.py; sionna-rt's imports rt eagerly, so `import
    sionna.phy` (every Sionna back-end) would load the ray tracer. The installed one must be no-rt's
    (`make raytraced` reinstalls it after sionna-rt)."""
    import importlib.util

    spec = importlib.util.find_spec("sionna")
    if spec is None:
        pytest.skip("sionna is not installed")
    text = Path(spec.origin).read_text()
    assert "from . import rt" not in text, f"{spec.origin} imports sionna.rt eagerly: reinstall sionna-no-rt " \
                                           "(pip install --force-reinstall --no-deps sionna-no-rt==2.2.0)"


def test_missing_ray_tracer_is_one_line(monkeypatch):
    """Without sionna-rt: a shipped scene cannot be found and the solver cannot start, each in one line that
    says how to install it (an OSError for the latter, which the command line reports as one error line)."""
    from beamattn.wireless.channels import sionna_rt

    monkeypatch.setattr(sionna_rt, "_sionna_dir", lambda: None)
    with pytest.raises(ValueError) as e:
        SionnaRTChannel(SionnaRTConfig())
    assert "\n" not in str(e.value) and "field 'scene'" in str(e.value) and "beamattn[rt]" in str(e.value)
    monkeypatch.setattr(sionna_rt, "rt_available", lambda: False)
    assert sionna_rt.rt_ready() == (False, f"sionna.rt is not importable; {sionna_rt.RT_INSTALL_HINT}")
    with pytest.raises(sionna_rt.RayTracerUnavailable) as e:
        sionna_rt._import_rt()
    assert isinstance(e.value, OSError) and "\n" not in str(e.value) and "libllvm19" in str(e.value)


def test_cache_roundtrip_and_corruption(tmp_path):
    cache = TraceCache(tmp_path)
    arrays = {"a": (np.arange(6) + 1j).astype(np.complex64).reshape(2, 3), "valid": np.array([True, False])}
    key = cache_key({"kind": "trace", "x": 1}, {"positions": np.zeros((2, 3))})
    assert key != cache_key({"kind": "trace", "x": 1}, {"positions": np.full((2, 3), 1e-9)})  # positions matter
    assert key != cache_key({"kind": "trace", "x": 2}, {"positions": np.zeros((2, 3))})  # settings matter
    assert cache.get(key) is None
    cache.put(key, arrays)
    got = cache.get(key)
    assert set(got) == set(arrays) and all(np.array_equal(got[k], arrays[k]) for k in arrays)
    payload, digest = cache.paths(key)
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    payload.write_bytes(bytes(data))
    with pytest.warns(CorruptCacheWarning, match="corrupt") as rec:
        assert cache.get(key) is None
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    cache.put(key, arrays)  # recomputed and stored again
    digest.unlink()  # a payload without its checksum is not trusted
    with pytest.warns(CorruptCacheWarning):
        assert cache.get(key) is None


def test_evolve_trace_closed_form():
    """One path: h(t) = a e^{j2π f_D t} e^{-j2π f τ}, per antenna."""
    a = torch.tensor([[1 + 1j, 2 - 1j]], dtype=torch.complex64).T  # [N=2, P=1]
    tau, fd, dt = torch.tensor([1e-7]), torch.tensor([300.0]), torch.tensor(0.01)
    f = torch.tensor([-1e6, 0.0, 2e6], dtype=torch.float64)
    h = evolve_trace(a, tau, fd, dt, f)  # [F, N]
    one = torch.tensor(1.0, dtype=torch.float64)
    doppler = torch.polar(one, one * 2 * math.pi * 300 * 0.01)
    delay = torch.polar(torch.ones_like(f), -2 * math.pi * f * 1e-7)  # [F]
    want = a[:, 0].to(torch.complex128)[None, :] * doppler * delay[:, None]  # [F, N]
    assert torch.allclose(h, want.to(torch.complex64), atol=1e-5)
    assert torch.allclose(evolve_trace(a, tau, fd, torch.tensor(0.0)), a[:, 0])


# ---------------------------------------------------------------------------------------------------------------
# with the ray tracer
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.raytracing
@pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")
def test_shipped_scene_names_exist():
    from beamattn.wireless.channels.sionna_rt import scene_file

    for name in SHIPPED_SCENES:
        assert scene_file(name).is_file(), name


@pytest.mark.raytracing
@pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")
def test_equals_sionna_cfr_at_traced_positions(canyon):
    """At traced positions (samples 0, 10, 20) h equals paths.cfr(normalize_delays=False) of Sionna's own
    solve, the LoS flag equals a valid interaction-free path, and the element order equals Sionna's."""
    ch, s = canyon
    cfg = ch.config
    idx = [0, 10, 20]
    start, v = ch.last_tracks  # [B, 3] float64, scene frame
    t = s.times[idx].double().numpy()
    pos = (start[:, None, :] + t[None, :, None] * v[:, None, :]).reshape(-1, 3)  # [B·3, 3]
    vel = np.repeat(v, 3, 0)
    assert np.allclose(np.linalg.norm(vel, axis=-1), cfg.speed)
    assert np.allclose(ch.to_scene(s.positions[:, idx]).reshape(-1, 3), pos, atol=1e-3)  # the array frame
    scene, paths = fresh_paths(cfg, pos, vel)
    freqs = s.subcarrier_frequencies.double()
    want = paths.cfr(frequencies=freqs.numpy().astype(np.float32), normalize_delays=False, out_type="torch")
    want = want[:, 0, 0, :, 0, :].transpose(-1, -2)  # [B·3, F, N]
    got = s.h[:, idx].reshape(-1, *s.h.shape[2:])  # [B·3, F, N]
    assert torch.allclose(got, want.to(got.dtype), rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    valid = paths.valid.numpy()[:, 0, :]
    los = (valid & (paths.interactions.numpy()[:, :, 0, :] == 0).all(0)).any(-1)
    assert np.array_equal(s.los[:, idx].reshape(-1).numpy(), los)
    # Sionna's element positions (wavelengths, y-z plane) in our order
    ours = cfg.array.positions(dtype=torch.float64).numpy()
    theirs = np.array(scene.tx_array.normalized_positions.numpy()).T  # [N, 3]
    assert np.allclose(theirs, ours, atol=1e-6)


@pytest.mark.raytracing
@pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")
def test_los_path_is_our_steering_vector_towards_the_user(canyon):
    """The array frame of `positions`: a line-of-sight path's coefficients across the array are
    exp(+j2π u·r_n) with u the unit vector to the user's position in that frame (the package convention)."""
    ch, s = canyon
    cfg = dataclasses.replace(ch.config, antenna_pattern="iso")
    b, t = (s.los[:, 0]).nonzero()[0].item(), 0
    pos = ch.last_tracks[0][b:b + 1]  # [1, 3] the track's start, traced at t = 0
    _, paths = fresh_paths(cfg, pos, np.zeros_like(pos))
    a, _ = paths.cir(normalize_delays=False, out_type="numpy")  # [1, 1, 1, N, P, 1]
    valid = paths.valid.numpy()[0, 0]
    los = valid & (paths.interactions.numpy()[:, 0, 0, :] == 0).all(0)
    a_los = torch.from_numpy(np.asarray(a)[0, 0, 0, :, los.argmax(), 0])  # [N]
    u = (s.positions[b, t] / s.positions[b, t].norm()).double()
    steer = steering_vector(cfg.array, u, torch.complex128)  # [N]
    assert corr(a_los.to(torch.complex128), steer) > 0.9999


@pytest.mark.raytracing
@pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")
def test_doppler_evolution_matches_a_fresh_trace_at_a_quarter_metre(canyon):
    """A trace evolved by its paths' Doppler over 0.25 m correlates >= 0.99 with a fresh trace there."""
    ch, s = canyon
    cfg = dataclasses.replace(ch.config, num_subcarriers=None)
    p0, v = ch.last_tracks  # [B, 3] each, scene frame
    dt = 0.25 / cfg.speed
    both = SionnaRTChannel(cfg, cache=ch.cache).trace(np.concatenate([p0, p0 + v * dt]), np.concatenate([v, v]))
    b = len(p0)
    a, tau, fd = (torch.from_numpy(both[k]) for k in ("a", "tau", "doppler"))
    evolved = evolve_trace(a[:b], tau[:b], fd[:b], torch.full((b,), dt))  # [B, N]
    fresh = evolve_trace(a[b:], tau[b:], fd[b:], torch.zeros(b))  # [B, N]
    static = evolve_trace(a[:b], tau[:b], fd[:b], torch.zeros(b))
    for i in range(b):
        assert corr(evolved[i], fresh[i]) >= 0.99, (i, corr(evolved[i], fresh[i]), corr(static[i], fresh[i]))


@pytest.mark.raytracing
@pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")
def test_every_sample_is_nonzero_and_moves_at_speed(canyon):
    """No h = 0 anywhere (tracks with a no-path traced position were replaced), and positions move at
    `speed` along a straight line."""
    ch, s = canyon
    power = s.h.abs().square().mean(dim=(2, 3))  # [B, T]
    assert bool((power > 0).all()) and bool(torch.isfinite(s.h.abs()).all())
    step = (s.positions[:, 1:] - s.positions[:, :-1]).norm(dim=-1)
    assert torch.allclose(step, torch.full_like(step, ch.config.speed * ch.config.sample_interval), rtol=1e-3)


@pytest.mark.raytracing
@pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")
def test_positions_without_a_path_are_excluded(cache_dir):
    """A receiver inside a building gets no path; tracks are drawn only on the ground, and the rounds that
    found a no-path traced position replaced that track (deterministically for one seed)."""
    ch = SionnaRTChannel(canyon_config(min_distance=5.0, max_distance=90.0, sector_half_width_deg=180.0),
                         cache=TraceCache(cache_dir))
    hm = ch.height_map()
    i, j = np.unravel_index(np.nanargmax(hm.z), hm.z.shape)  # the tallest building's roof
    inside = np.array([[hm.x0 + (j + 0.5) * hm.res, hm.y0 + (i + 0.5) * hm.res, hm.z[i, j] - 5.0]])
    assert not ch.trace(inside, np.zeros_like(inside))["valid"].any()
    s = ch.generate(4, seed=11)
    assert ch.last_stats["rejected_tracks"] > 0  # behind the BS and around the corners: some had no path
    assert bool((s.h.abs().square().sum(-1) > 0).all())
    scene_pos = ch.to_scene(s.positions)  # [B, T, 3]
    r, c, ok = hm.cells(scene_pos[..., :2])
    assert ok.all() and hm.ground[r, c].all()
    assert np.allclose(scene_pos[..., 2], hm.ground_z + ch.config.ut_height, atol=1e-4)


@pytest.mark.raytracing
@pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")
def test_cache_hit_equals_fresh_trace_and_corruption_is_recomputed(canyon, tmp_path):
    ch, s = canyon
    cache = TraceCache(tmp_path)
    first = SionnaRTChannel(ch.config, cache=cache)
    a = first.generate(2, seed=3)
    assert first.last_stats["solves"] >= 2  # a cold cache: the height map and the traces are solved
    assert torch.allclose(a.h, s.h, rtol=1e-5, atol=1e-6 * float(s.h.abs().max()))
    again = SionnaRTChannel(ch.config, cache=cache)
    b = again.generate(2, seed=3)
    assert again.last_stats["solves"] == 0 and again.last_stats["cache_hits"] >= 2
    assert torch.equal(a.h, b.h) and torch.equal(a.los, b.los) and torch.equal(a.positions, b.positions)
    entries = sorted(p for p in tmp_path.rglob("*.npz"))
    for p in entries:
        p.write_bytes(p.read_bytes()[:-7])  # truncated
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        c = SionnaRTChannel(ch.config, cache=cache).generate(2, seed=3)
    assert sum(issubclass(w.category, CorruptCacheWarning) for w in rec) == len(entries)
    assert torch.allclose(c.h, a.h, rtol=1e-5, atol=1e-6 * float(a.h.abs().max()))
    d = SionnaRTChannel(ch.config, cache=cache)
    d.generate(2, seed=3)
    assert d.last_stats["solves"] == 0


@pytest.mark.raytracing
@pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")
def test_per_drop_normalisation_and_seeds(canyon):
    ch, s = canyon
    cfg = dataclasses.replace(ch.config, normalization="per-drop")
    n = SionnaRTChannel(cfg, cache=ch.cache).generate(2, seed=3)  # same traces: cache hits
    p = n.h.abs().square().mean(dim=(1, 2, 3))
    assert torch.allclose(p, torch.ones_like(p), atol=1e-5)
    ratio = n.h / s.h  # one real positive factor per drop: the relative power within the drop is kept
    for b in range(2):
        assert torch.allclose(ratio[b], ratio[b].flatten()[0].abs().expand_as(ratio[b]).to(ratio.dtype), rtol=1e-3)
    other = SionnaRTChannel(cfg, cache=ch.cache).generate(2, seed=4)
    assert not torch.allclose(other.positions, n.positions)


@pytest.mark.raytracing
@pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")
def test_no_room_for_tracks_is_one_line(cache_dir):
    ch = SionnaRTChannel(canyon_config(min_distance=10.0, max_distance=10.005), cache=TraceCache(cache_dir))
    with pytest.raises(ValueError) as e:
        ch.generate(1, seed=0)
    assert "\n" not in str(e.value) and "max_distance" in str(e.value)


@pytest.mark.raytracing
@pytest.mark.skipif(not READY, reason=f"ray tracer unavailable: {WHY}")
def test_run_on_a_ray_traced_scenario_writes_metrics_and_the_scene_map(cache_dir, tmp_path, monkeypatch):
    """`run` end to end on a tiny ray-traced scenario: finite KPIs, genie >= every policy, and the map."""
    from beamattn.wireless.runner import run_scenario
    from beamattn.wireless.scene_map import scene_map_figure

    monkeypatch.setenv("BEAMATTN_RT_CACHE", str(cache_dir))
    cfg = canyon_config()
    chan = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name != "array" and getattr(cfg, f.name) is not None}
    doc = {"scenario": {"name": "canyon", "seed": 5, "drops": 2, "chunk_drops": 2, "snr_db": 0.0,
                        "policies": ["genie", "exhaustive", "best-of-set-b", "attention-untrained"]},
           "channel": {"backend": "sionna-rt", **chan, "normalization": "per-drop"},
           "array": {"num_rows": 1, "num_cols": 8}, "codebook": {"oversampling": 2},
           "measurement": {"period": 0.02, "delay": 0.01, "set_b": 4, "history": 2}, "selector": {"history": 2}}
    scn = parse_scenario(doc, source="canyon.toml")
    res = run_scenario(scn, tmp_path / "out", progress=False)
    genie = res.summary["genie"]["snr_db"]["mean"]
    for name, s in res.summary.items():
        assert math.isfinite(s["snr_db"]["mean"]) and s["snr_db"]["mean"] <= genie + 1e-6, name
    assert abs(res.summary["genie"]["loss_db"]["mean"]) < 1e-5
    png = tmp_path / "out" / "figures" / "scene_map.png"
    assert png.is_file() and png.stat().st_size > 10_000
    pos = np.asarray(res.trace["_positions_use"])  # [drops, D, 3]
    assert pos.shape[0] == 2 and pos.shape[2] == 3
    with pytest.raises(ValueError, match="expected"):
        scene_map_figure(scn.make_channel(), pos[0], np.zeros(3), tmp_path / "bad.png")
