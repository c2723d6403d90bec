"""Outputs are never lost, mixed or left half-made (issue 10, section 3), and the CLI's small usage cases.

Read-only places: the tests run as root in CI containers, where ``chmod`` does not stop writes, so an
unwritable folder is simulated by making the write probe of :func:`beamattn.outdir.check_out` fail
with ``EROFS`` (what a read-only mount gives); a real ``chmod`` case runs only when not root.
"""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import beamattn.outdir as outdir
from beamattn.cli import main
from beamattn.outdir import MARKER, StagedDir, StagedFile, check_out, remove_stale

TINY_TOML = """
[scenario]
name = "tiny"
drops = 2
chunk_drops = 2
[channel]
speed_kmh = 30
duration = 0.2
sample_interval = 0.002
[array]
num_cols = 8
[measurement]
set_b = 4
history = 2
[selector]
history = 2
d_model = 8
[training]
drops = 4
steps = 4
batch = 16
"""


@pytest.fixture
def scn_file(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_TOML)
    return str(p)


@pytest.fixture(autouse=True)
def _restore_sigterm():
    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)


def _one_error_line(capsys, cmd: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"beamattn {cmd}: error: "), err
    return err


# --------------------------------------------------------------------------- check_out


def test_check_out_refuses_unusable_paths(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="existing file; expected a folder"):
        check_out(f, kind="dir")
    with pytest.raises(ValueError, match="existing folder; expected a file"):
        check_out(tmp_path, kind="file")
    with pytest.raises(ValueError, match="which is a file"):
        check_out(f / "sub" / "out", kind="dir")
    with pytest.raises(ValueError, match="which is a file"):
        check_out(f / "x.npz", kind="file")
    # A fresh path (missing parents too) and an empty folder are fine; nothing is created by the check.
    assert check_out(tmp_path / "a" / "b", kind="dir") == tmp_path / "a" / "b"
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", kind="dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file.txt"]


def test_check_out_refuses_a_read_only_place(tmp_path, monkeypatch):
    def rofs(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(outdir.tempfile, "mkstemp", rofs)
    with pytest.raises(ValueError, match="read-only filesystem"):
        check_out(tmp_path / "new" / "out", kind="dir")
    with pytest.raises(ValueError, match="read-only filesystem"):
        check_out(tmp_path / "x.npz", kind="file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_check_out_refuses_an_unwritable_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="cannot create files"):
            check_out(ro / "out", kind="dir")
    finally:
        ro.chmod(0o755)


def test_check_out_existing_results_need_force_and_a_marker(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds 1 entries; pass --force"):
        check_out(out, kind="dir")
    # Not written by beamattn (no marker): never replaced, even forced (think `--out ~ --force`).
    with pytest.raises(ValueError, match="did not write"):
        check_out(out, kind="dir", force=True)
    (out / MARKER).write_text("{}")
    check_out(out, kind="dir", force=True)
    f = tmp_path / "x.npz"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="already exists; pass --force"):
        check_out(f, kind="file")
    check_out(f, kind="file", force=True)


def test_check_out_never_replaces_an_input_or_the_current_folder(tmp_path, monkeypatch):
    ckpt = tmp_path / "sel.safetensors"
    ckpt.write_bytes(b"x")
    with pytest.raises(ValueError, match="is the input"):
        check_out(ckpt, kind="file", force=True, inputs=[ckpt])
    res = tmp_path / "res"
    res.mkdir()
    (res / MARKER).write_text("{}")
    (res / "selector.safetensors").write_bytes(b"x")
    with pytest.raises(ValueError, match="holding the input"):
        check_out(res, kind="dir", force=True, inputs=[res / "selector.safetensors"])
    monkeypatch.chdir(res)
    with pytest.raises(ValueError, match="current folder"):
        check_out(".", kind="dir", force=True)


# --------------------------------------------------------------------------- staged writes


def test_staged_dir_replaces_as_a_whole_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    with StagedDir(out, command="t") as stage:
        (stage / "figures").mkdir()
        (stage / "figures" / "a.png").write_text("old")
        (stage / "metrics.json").write_text("1")
        assert not out.exists()  # nothing visible before the end
    assert (out / MARKER).is_file() and (out / "figures" / "a.png").is_file()
    with pytest.raises(ValueError, match="--force"):  # refused at commit time without force
        with StagedDir(out) as stage:
            (stage / "metrics.json").write_text("2")
    with pytest.raises(RuntimeError):  # a failure mid-way keeps the old results untouched
        with StagedDir(out, force=True) as stage:
            (stage / "metrics.json").write_text("2")
            raise RuntimeError("boom")
    assert (out / "metrics.json").read_text() == "1"
    with StagedDir(out, force=True) as stage:
        (stage / "metrics.json").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "metrics.json"])  # no old figures
    assert (out / "metrics.json").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or moved-aside folder left


def test_staged_file(tmp_path):
    f = tmp_path / "x.npz"
    with StagedFile(f) as tmp:
        assert tmp.name == "x.npz" and tmp.parent != tmp_path
        tmp.write_text("1")
    with pytest.raises(ValueError, match="--force"):
        with StagedFile(f) as tmp:
            tmp.write_text("2")
    with StagedFile(f, force=True) as tmp:
        tmp.write_text("3")
    assert f.read_text() == "3" and [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_staging_of_a_killed_process_is_removed(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    host = json.dumps({"host": socket.gethostname()})
    stale = tmp_path / f".out.staging-{dead}-0badf00d"
    stale.mkdir()
    (stale / "metrics.json").write_text("{}")  # complete-looking metrics of a SIGKILLed run
    (stale / ".owner.json").write_text(host)
    live = tmp_path / f".other.staging-{alive}-0badf00d"
    live.mkdir()
    (live / ".owner.json").write_text(host)
    remote = tmp_path / f".far.staging-{dead}-0badf00d"  # another machine's, on a shared filesystem
    remote.mkdir()
    (remote / ".owner.json").write_text(json.dumps({"host": "not-" + socket.gethostname()}))
    old = tmp_path / f".res.old-{dead}-0badf00d"  # killed between moving the old results aside and in
    old.mkdir()
    (old / "metrics.json").write_text("old")
    with StagedDir(tmp_path / "out") as stage:
        (stage / "metrics.json").write_text("new")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["out", live.name, remote.name, "res"])
    assert (tmp_path / "res" / "metrics.json").read_text() == "old"  # restored, not lost
    assert remove_stale(tmp_path) == []


# --------------------------------------------------------------------------- the CLI: checked first


def _forbid(monkeypatch, module: str, name: str):
    import importlib

    def called(*args, **kwargs):
        raise AssertionError(f"{name} ran although the output path is unusable")

    monkeypatch.setattr(importlib.import_module(module), name, called)


HEAVY = {
    "run": ("beamattn.wireless.runner", "run_scenario"),
    "train": ("beamattn.wireless.train", "train_selector"),
    "linklevel": ("beamattn.linklevel.run", "run_linklevel"),
    "channels": ("beamattn.wireless.export", "export_channels"),
    "export": ("beamattn.wireless.keras_export", "export_keras"),
    "experiment": ("beamattn.experiments", "run_experiment"),
    "demo": ("beamattn.demo", "run_demo"),
    "sweep": ("beamattn.wireless.sweep", "run_sweep"),
}


def _argv(cmd: str, scn: str, out: str, tmp_path: Path) -> list[str]:
    ckpt = tmp_path / "sel.safetensors"
    ckpt.write_bytes(b"x")
    sweep = tmp_path / "s.toml"
    sweep.write_text("")
    return {"run": ["run", scn], "train": ["train", scn], "linklevel": ["linklevel", scn],
            "channels": ["channels", scn], "export": ["export", str(ckpt), "--format", "keras"],
            "experiment": ["experiment", "permutation-equivariance"], "demo": ["demo"],
            "sweep": ["sweep", str(sweep)]}[cmd] + ["--out", out]


@pytest.mark.parametrize("cmd", sorted(HEAVY))
def test_unusable_out_is_one_line_before_any_work(cmd, scn_file, tmp_path, monkeypatch, capsys):
    from beamattn.experiments import EXPERIMENTS

    assert "permutation-equivariance" in EXPERIMENTS
    _forbid(monkeypatch, *HEAVY[cmd])
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    suffix = {"channels": ".npz", "export": ".safetensors"}.get(cmd, "")
    # under a file
    assert main(_argv(cmd, scn_file, str(blocker / f"out{suffix}"), tmp_path)) == 2
    assert "which is a file" in _one_error_line(capsys, cmd)
    # a file where a folder is wanted / an existing file without --force
    assert main(_argv(cmd, scn_file, str(blocker), tmp_path)) == 2
    _one_error_line(capsys, cmd)
    # a read-only place
    monkeypatch.setattr(outdir.tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "")))
    assert main(_argv(cmd, scn_file, str(tmp_path / "new" / f"out{suffix}"), tmp_path)) == 2
    assert "read-only" in _one_error_line(capsys, cmd)
    assert not (tmp_path / "new").exists()


def test_run_rerun_needs_force_and_replaces_the_whole_folder(scn_file, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["run", scn_file, "--out", str(out), "--policies", "genie,exhaustive"]
    assert main(base) == 0
    assert (out / "figures").is_dir()
    before = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert main(base + ["--no-figures", "--seed", "1"]) == 2
    assert "--force" in _one_error_line(capsys, "run")
    assert (out / "metrics.json").read_text() == before
    assert main(base + ["--no-figures", "--seed", "1", "--force"]) == 0
    assert not (out / "figures").exists()  # the old figures do not stay beside the new metrics
    assert json.loads((out / "metrics.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.toml"]


def test_train_refuses_to_overwrite_a_checkpoint(scn_file, tmp_path, capsys):
    out = tmp_path / "ckpt"
    assert main(["train", scn_file, "--out", str(out)]) == 0
    ckpt = (out / "selector.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", scn_file, "--out", str(out), "--seed", "5"]) == 2
    assert "--force" in _one_error_line(capsys, "train")
    assert (out / "selector.safetensors").read_bytes() == ckpt
    assert main(["train", scn_file, "--out", str(out), "--seed", "5", "--force"]) == 0
    assert (out / "selector.safetensors").read_bytes() != ckpt


def test_export_onto_its_own_checkpoint_is_refused_even_forced(tmp_path, capsys):
    ckpt = tmp_path / "selector.safetensors"
    ckpt.write_bytes(b"not really a checkpoint")
    for extra in ([], ["--force"]):
        assert main(["export", str(ckpt), "--format", "keras", "--out", str(ckpt), *extra]) == 2
        assert "is the input" in _one_error_line(capsys, "export")
    assert ckpt.read_bytes() == b"not really a checkpoint"


def test_sigterm_in_the_write_phase_is_a_clean_exit(scn_file, tmp_path, monkeypatch, capsys):
    import beamattn.wireless.plots as plots

    def killed(*args, **kwargs):  # the figures are being written when SIGTERM arrives
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(plots, "run_figures", killed)
    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)
    assert main(["run", scn_file, "--out", str(out), "--policies", "genie"]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "beamattn run: terminated (SIGTERM); no partial results were left"
    assert "Traceback" not in "\n".join(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]  # no results, no staging folder
    assert signal.getsignal(signal.SIGTERM) is before  # main() gives the caller's handler back


def test_ctrl_c_is_one_line(monkeypatch, tmp_path, capsys):
    import beamattn.demo as demo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", interrupted)
    assert main(["demo", "--out", str(tmp_path / "d")]) == 130
    assert capsys.readouterr().err.strip() == "beamattn demo: interrupted"


# --------------------------------------------------------------------------- small CLI items


def test_no_arguments_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0,,5", "0,5,", ",", "1,abc", "1,nan"])
def test_snr_list_with_a_hole_is_refused(text, scn_file, tmp_path, capsys, monkeypatch):
    _forbid(monkeypatch, "beamattn.linklevel.run", "run_linklevel")
    assert main(["linklevel", scn_file, "--out", str(tmp_path / "o"), f"--snr-db={text}"]) == 2
    err = _one_error_line(capsys, "linklevel")
    assert repr(text) in err and "item" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cmd", sorted(HEAVY))
def test_seed_out_of_range_is_refused(cmd, scn_file, tmp_path, monkeypatch, capsys):
    if cmd in ("export", "sweep"):  # no --seed
        return
    _forbid(monkeypatch, *HEAVY[cmd])
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        main(_argv(cmd, scn_file, str(out), tmp_path) + ["--seed", str(2**64)])
    assert e.value.code == 2
    assert "2^63" in capsys.readouterr().err
    assert not out.exists()


def test_experiment_refused_seed_leaves_no_stub_folder(tmp_path):
    from beamattn.experiments import run_experiment

    with pytest.raises(ValueError, match="seed"):
        run_experiment("permutation-equivariance", tmp_path / "exp", small=True, seed=2**64)
    assert list(tmp_path.iterdir()) == []


def test_failed_scheduler_connection_leaves_no_stub_folder(tmp_path, monkeypatch, capsys):
    import beamattn.wireless.sweep as sweep_mod
    from test_sweep import _write_sweep

    def refuse(workers, scheduler):
        raise sweep_mod.SweepError(f"sweep: cannot connect to scheduler {scheduler!r}: refused")

    monkeypatch.setattr(sweep_mod, "_connect", refuse)
    sweep_file = _write_sweep(tmp_path / "def")
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "cannot connect" in _one_error_line(capsys, "sweep")
    assert not out.exists()


def test_sweep_resume_reports_each_unusable_result_once(tmp_path, monkeypatch, capsys, recwarn):
    import beamattn.wireless.runner as runner
    from beamattn.wireless.sweep import load_sweep
    from test_sweep import _write_sweep

    # The point is the report, not the numbers: each task's run_scenario is a stub with fixed KPIs.
    monkeypatch.setattr(runner, "run_scenario", lambda scn, out, policies, **kw: SimpleNamespace(
        summary={p: {"snr_db": {"mean": 1.0}} for p in policies}))
    sweep_file = _write_sweep(tmp_path / "def")
    out = tmp_path / "out"
    tid = load_sweep(sweep_file).tasks()[0][0]
    (out / "tasks").mkdir(parents=True)
    (out / "tasks" / f"{tid}.json").write_text("{truncated")
    assert main(["sweep", str(sweep_file), "--out", str(out), "--resume", "--no-figures"]) == 0
    err = capsys.readouterr().err
    mentions = [line for line in err.splitlines() if f"{tid}.json" in line]
    mentions += [str(w.message) for w in recwarn if f"{tid}.json" in str(w.message)]
    assert len(mentions) == 1, mentions
    assert mentions[0].startswith("beamattn sweep: warning: sweep: result") and "unusable" in mentions[0]


@pytest.mark.parametrize("api", ["run", "train", "channels", "linklevel", "demo", "experiment", "experiment all"])
def test_api_refuses_aliasing_seeds_before_writing(api, tmp_path):
    from wireless_fixtures import tiny_scenario

    from beamattn.demo import run_demo
    from beamattn.experiments import run_all, run_experiment
    from beamattn.linklevel.run import run_linklevel
    from beamattn.wireless.export import export_channels
    from beamattn.wireless.runner import run_scenario
    from beamattn.wireless.train import train_selector

    out = tmp_path / "o"
    call = {"run": lambda: run_scenario(tiny_scenario(), out, seed=2**64, progress=False),
            "train": lambda: train_selector(tiny_scenario(), out, seed=2**64, progress=False),
            "channels": lambda: export_channels(tiny_scenario(), tmp_path / "o.npz", seed=2**64),
            "linklevel": lambda: run_linklevel(tiny_scenario(), out, seed=2**64, progress=False),
            "demo": lambda: run_demo(out, seed=2**64, trials=1),
            "experiment": lambda: run_experiment("permutation-equivariance", out, small=True, seed=2**64),
            "experiment all": lambda: run_all(out, small=True, seed=2**64, progress=False)}[api]
    with pytest.raises(ValueError, match=r"seed = 18446744073709551616; expected an integer in \[0, 2\^63 - 1\]"):
        call()
    assert list(tmp_path.iterdir()) == []


_SLOW_WRITE = """
import sys, time, pathlib
import beamattn.wireless.plots as plots
def slow(trace, summary, scn, fig_dir):  # the write phase: signal the test, then wait to be killed
    pathlib.Path(sys.argv[1]).write_text("writing")
    time.sleep(120)
plots.run_figures = slow
from beamattn.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow  # two fresh Python processes importing torch: ~15-35 s on 2 shared cores
def test_killed_processes_leave_nothing_behind(scn_file, tmp_path):
    """A real process, signalled in its write phase: SIGTERM -> exit 143 and no staging folder; SIGKILL leaves
    one, which the next run into the same parent removes."""
    import time

    script = tmp_path / "slow.py"
    script.write_text(_SLOW_WRITE)
    res = tmp_path / "res"
    res.mkdir()

    def start(flag):
        p = subprocess.Popen([sys.executable, str(script), str(flag), "run", scn_file, "--out", str(res / "out"),
                              "--policies", "genie"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t0 = time.time()
        while not flag.exists():
            assert p.poll() is None and time.time() - t0 < 120, p.stderr.read() if p.poll() is not None else "slow"
            time.sleep(0.1)
        return p

    p = start(tmp_path / "flag1")
    assert [e.name.split(".staging-")[0] for e in res.iterdir()] == [".out"]  # staging, beside the target
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 143
    assert "terminated (SIGTERM)" in p.stderr.read() and list(res.iterdir()) == []
    p = start(tmp_path / "flag2")
    p.kill()
    p.wait(60)
    p.stderr.close()
    stale = list(res.iterdir())
    assert len(stale) == 1 and ".staging-" in stale[0].name and not (res / "out").exists()
    assert main(["run", scn_file, "--out", str(res / "out"), "--policies", "genie", "--no-figures"]) == 0
    assert sorted(e.name for e in res.iterdir()) == ["out"]
