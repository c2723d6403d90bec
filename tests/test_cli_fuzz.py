"""Property-based tests of every ``beamattn`` subcommand's arguments.

For random argument lists (every option of every subcommand, read from the parser itself, with valid
and invalid values, and positional inputs that exist, are missing, are folders or are garbage) the
command line must either succeed (exit 0) or refuse with exit code 2 and one error line — its own
``beamattn CMD: error: ...`` or argparse's usage message ending in ``beamattn CMD: error: ...`` —
never a traceback, and a refused command leaves its working folder exactly as it was.

The point is argument handling, so the computations are replaced by stubs that record what they were
called with (and check it: seeds in range, counts >= 1, ``force`` passed through); a few real runs on
a tiny scenario check the same property end to end.
"""

import argparse
import contextlib
import io
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from beamattn.cli import build_parser, main
from beamattn.seeds import MAX_SEED

SCENARIO = """
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
"""
SWEEP = """
[sweep]
name = "s"
base = "scn.toml"
seeds = [0]
policies = ["genie"]
[grid]
"channel.speed_kmh" = [30]
"""


def _fixture_files(root: Path) -> None:
    (root / "scn.toml").write_text(SCENARIO)
    (root / "sweep.toml").write_text(SWEEP)
    (root / "binary.toml").write_bytes(bytes(range(256)))
    (root / "ckpt.safetensors").write_bytes(b"\x00" * 16)
    (root / "file.txt").write_text("x")
    (root / "folder").mkdir()
    (root / "results").mkdir()  # beamattn results: replaceable with --force
    (root / "results" / ".beamattn").write_text("{}")
    (root / "results" / "metrics.json").write_text("{}")
    (root / "run").mkdir()  # a `beamattn run` output for `compare`: two policies, two drops
    (root / "run" / "metrics.json").write_text('{"scenario": {"name": "tiny"}, "seed": 0}')
    (root / "run" / "steps.csv").write_text(
        "drop,decision,time_s,policy,beam,snr_db,genie_db,mrt_db,loss_db,se,top1,within_1db,measured,active,entropy\n"
        + "".join(f"{d},0,0.0,{p},1,{5 - v},5,6,{v},1.0,{int(v == 0)},1,{m},1,0\n"
                  for d in (0, 1) for p, v, m in (("genie", 0, 0), ("exhaustive", 0.5 + d, 16))))
    (root / "foreign").mkdir()  # someone else's: never replaced
    (root / "foreign" / "notes.txt").write_text("mine")


def _listing(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0)
            for p in sorted(root.rglob("*"))}


# --------------------------------------------------------------------------- the parser's own options

PARSER = build_parser()
SUB = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction))
COMMANDS = sorted(SUB.choices)


def _options(cmd: str) -> list[tuple[str, bool]]:
    """(option string, takes a value) for every option of ``cmd`` except -h."""
    return [(a.option_strings[-1], a.nargs != 0) for a in _actions(cmd)]


def _actions(cmd: str) -> list[argparse.Action]:
    return [a for a in SUB.choices[cmd]._actions if a.option_strings and "-h" not in a.option_strings]


# Values a user would give, per option (dest), so that many examples get past the parser and are judged
# by the command's own checks; the rest of the time any value of VALUES is drawn.
GOOD = {"seed": st.sampled_from(["0", "1", "42", str(2**63 - 1)]), "drops": st.sampled_from(["1", "2"]),
        "steps": st.sampled_from(["1", "3"]), "trials": st.sampled_from(["1", "2"]),
        "policies": st.sampled_from(["genie", "genie,exhaustive", "exhaustive,stale,genie"]),
        "snr_db": st.sampled_from(["0", "-5,0,5", "10"]), "code_rate": st.sampled_from(["0.5", "0.3", "0.9"]),
        "device": st.just("cpu"), "checkpoint": st.just("ckpt.safetensors"), "scenario": st.just("scn.toml"),
        "workers": st.sampled_from(["1", "2"]), "scheduler": st.just("tcp://127.0.0.1:1"),
        "subcarriers": st.sampled_from(["12", "72"]), "max_blocks": st.sampled_from(["1", "10"]),
        "target_errors": st.sampled_from(["1", "5"]), "format": st.just("keras"), "out": st.just("new"),
        "model": st.sampled_from(["attention", "mlp", "lstm", "nosuch"]),
        "policy_checkpoint": st.sampled_from(["mlp=ckpt.safetensors", "mlp", "attention=ckpt.safetensors", "=x"]),
        "reference": st.sampled_from(["genie", "exhaustive", "nosuch"])}


# --plugin imports the module it names into this process: only names that cannot import a real package
# (a missing module, a missing file, a file that is not Python) — a fuzzed "keras" or "ls" would.
PLUGINS = st.sampled_from(["nosuch_plugin_module", "missing.py", "scn.toml", "file.txt", "", "-", "\x00"])


def _value(action: argparse.Action):
    if action.dest == "plugin":
        return PLUGINS
    if action.choices is not None:
        good = st.sampled_from([str(c) for c in action.choices])
    else:
        good = GOOD.get(action.dest, st.just("1"))
    return st.one_of(good, good, good, VALUES)  # 3 of 4: a plausible value


def _positionals(cmd: str) -> list[str]:
    return [a.dest for a in SUB.choices[cmd]._actions if not a.option_strings]


NUMBERS = st.one_of(st.integers(-3, 5), st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**64), 10**30])).map(str)
FLOATS = st.sampled_from(["0.5", "0", "1", "-1", "1e300", "nan", "inf", "-inf", "0.999", "1e-300", "5"])
WORDS = st.sampled_from(["", " ", "-", ",", "0,,5", "-5,0,5", "0,5,", "genie", "genie,exhaustive", "genie,genie",
                         "nosuch", "attention", "cpu", "cuda", "cuda:7", "mps", "meta", "keras", "ls", "lmmse",
                         "perfect", "tcp://127.0.0.1:1", "\x00", "é", "1e3", "--"])
PATHS = st.sampled_from(["scn.toml", "missing.toml", "folder", "binary.toml", "file.txt", "ckpt.safetensors",
                         "sweep.toml", "file.txt/x", "results", "foreign", "new", "new/deep/out", "out.npz",
                         "out.safetensors", ".", "..", ""])
VALUES = st.one_of(NUMBERS, FLOATS, WORDS, PATHS, st.text(max_size=6))
POSITIONAL = {"scenario": PATHS, "checkpoint": PATHS, "sweep": PATHS, "runs": PATHS,
              "name": st.one_of(st.sampled_from(["list", "all", "permutation-equivariance", "vit-landmarks",
                                                 "nosuch", ""]), st.text(max_size=4))}


@st.composite
def argvs(draw, cmd: str):
    argv = [cmd]
    for p in _positionals(cmd):
        if draw(st.integers(0, 19)) > 0:  # now and then missing: argparse's error
            good = {"scenario": "scn.toml", "checkpoint": "ckpt.safetensors", "sweep": "sweep.toml",
                    "name": "permutation-equivariance", "runs": "run"}[p]
            argv.append(good if draw(st.integers(0, 2)) > 0 else draw(POSITIONAL[p]))
    for a in draw(st.lists(st.sampled_from(_actions(cmd)), max_size=5)):
        opt = a.option_strings[-1]
        if a.nargs != 0:
            value = draw(_value(a))
            argv += [f"{opt}={value}"] if draw(st.booleans()) else [opt, value]
        else:
            argv.append(opt)
    for a in _actions(cmd):  # required options (--format): mostly present and plausible
        if a.required and a.dest != "out" and draw(st.integers(0, 9)) > 0:
            argv += [a.option_strings[-1], draw(_value(a))]
    if draw(st.integers(0, 19)) > 0 and any(a.dest == "out" for a in _actions(cmd)):
        argv += ["--out", "new" if draw(st.integers(0, 2)) > 0 else draw(PATHS)]
    return argv


# --------------------------------------------------------------------------- stubs for the computations

CALLS: list[tuple[str, tuple, dict]] = []


def _check_call(name: str, args: tuple, kwargs: dict) -> None:
    seed = kwargs.get("seed")
    assert seed is None or (isinstance(seed, int) and 0 <= seed <= MAX_SEED), (name, seed)
    for key in ("steps", "trials", "max_blocks", "target_block_errors", "workers"):
        if kwargs.get(key) is not None:
            assert isinstance(kwargs[key], int) and kwargs[key] >= 1, (name, key, kwargs[key])
    snrs = kwargs.get("snr_db_list")
    assert snrs is None or (snrs and all(s == s and abs(s) != float("inf") for s in snrs)), snrs


def _stub(name: str, ret):
    def stub(*args, **kwargs):
        _check_call(name, args, kwargs)
        CALLS.append((name, args, kwargs))
        return ret(*args, **kwargs) if callable(ret) else ret

    return stub


def _fake_keras_export(checkpoint, out, scenario=None):
    Path(out).write_bytes(b"exported")
    return Path(out)


FAKE_FILE = SimpleNamespace(selector={"normalizer": "softmax", "mode": "soft"}, num_beams=16, num_ant=8,
                            set_b=[0], metadata={"source": "stub"})
FAKE_RESULT = SimpleNamespace(name="x", supported=True, verdict="stub")


@pytest.fixture(scope="class")
def stubbed():  # class scope: torn down before the real runs below
    import beamattn.demo
    import beamattn.experiments
    import beamattn.keras
    import beamattn.linklevel.run
    import beamattn.wireless.export
    import beamattn.wireless.keras_export
    import beamattn.wireless.runner
    import beamattn.wireless.sweep
    import beamattn.wireless.learned.train
    import beamattn.wireless.train

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(beamattn.wireless.runner, "run_scenario", _stub("run_scenario", None))
        mp.setattr(beamattn.wireless.train, "train_selector", _stub("train_selector", None))
        mp.setattr(beamattn.wireless.learned.train, "train_learned", _stub("train_learned", {"parameters": 1}))
        mp.setattr(beamattn.linklevel.run, "run_linklevel", _stub("run_linklevel", None))
        mp.setattr(beamattn.wireless.export, "export_channels", _stub("export_channels", None))
        mp.setattr(beamattn.wireless.keras_export, "export_keras", _stub("export_keras", _fake_keras_export))
        mp.setattr(beamattn.keras, "read_selector_file", lambda path: FAKE_FILE)
        mp.setattr(beamattn.experiments, "run_experiment", _stub("run_experiment", FAKE_RESULT))
        mp.setattr(beamattn.experiments, "run_all", _stub("run_all", []))
        mp.setattr(beamattn.demo, "run_demo", _stub("run_demo", None))
        mp.setattr(beamattn.wireless.sweep, "run_sweep", _stub("run_sweep", None))
        yield


def _run(argv: list[str]) -> tuple[int, str, dict, dict]:
    """Run ``main(argv)`` in a fresh folder of inputs; (exit code, stderr, listing before, listing after)."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _fixture_files(root)
        before = _listing(root)
        err, out = io.StringIO(), io.StringIO()
        os.chdir(root)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                try:
                    rc = main(argv)
                except SystemExit as e:  # argparse: --help / --version exit 0, usage errors 2
                    rc = e.code
        finally:
            os.chdir(cwd)
        return rc, err.getvalue(), before, _listing(root)


def _assert_clean_outcome(argv: list[str], rc, err: str, before: dict, after: dict) -> None:
    cmd = argv[0]
    assert "Traceback" not in err, (argv, err)
    assert rc in (0, 2), (argv, rc, err)
    if rc == 2:
        lines = err.strip().splitlines()
        assert lines, argv
        if lines[0].startswith("usage:"):  # argparse: usage lines, then its one error line
            assert lines[-1].startswith(f"beamattn {cmd}: error: "), (argv, err)
        else:
            assert len(lines) == 1 and lines[0].startswith(f"beamattn {cmd}: error: "), (argv, err)
        assert after == before, (argv, "a refused command wrote something")


class TestStubbed:
    @pytest.mark.parametrize("cmd", COMMANDS)
    def test_every_subcommand_refuses_bad_arguments_in_one_line(self, cmd, stubbed):
        @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
        @given(argv=argvs(cmd))
        def prop(argv):
            CALLS.clear()
            rc, err, before, after = _run(argv)
            _assert_clean_outcome(argv, rc, err, before, after)
            if rc == 0 and CALLS:
                name, _, kwargs = CALLS[-1]
                args = PARSER.parse_args(argv)
                if "force" in kwargs:
                    assert kwargs["force"] == args.force, (argv, kwargs)
                if name == "export_keras":  # refused onto its own input even when forced
                    assert Path(args.checkpoint).resolve() != Path(args.out).resolve(), argv

        prop()


def test_parser_options_are_all_exercised():
    # The strategy draws from the parser itself: a new option is fuzzed without editing this file.
    assert set(COMMANDS) == {"run", "train", "compare", "channels", "sweep", "linklevel", "export", "experiment",
                             "demo"}
    assert ("--force", False) in _options("run") and ("--resume", False) in _options("train")


# --------------------------------------------------------------------------- a few real runs


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(policies=st.lists(st.sampled_from(["genie", "exhaustive", "stale", "nosuch", ""]), min_size=1, max_size=3),
       drops=st.sampled_from(["1", "2", "0", "x"]), seed=st.sampled_from(["0", "7", str(2**63), "-1"]),
       force=st.booleans(), out=st.sampled_from(["new", "results", "foreign", "file.txt"]))
@example(policies=["genie", "exhaustive"], drops="2", seed="7", force=False, out="new")  # runs
@example(policies=["stale"], drops="1", seed="0", force=True, out="results")  # replaces beamattn's results
@example(policies=["genie"], drops="1", seed="0", force=True, out="foreign")  # refused: not beamattn's
def test_real_runs_succeed_or_refuse_in_one_line(policies, drops, seed, force, out):
    argv = ["run", "scn.toml", "--out", out, "--no-figures", "--policies", ",".join(policies), "--drops", drops,
            "--seed", seed] + (["--force"] if force else [])
    rc, err, before, after = _run(argv)
    _assert_clean_outcome(argv, rc, err, before, after)
    valid = all(p in ("genie", "exhaustive", "stale") for p in policies) and len(set(policies)) == len(policies) \
        and drops in ("1", "2") and \
        seed in ("0", "7") and (out == "new" or (out == "results" and force))
    assert (rc == 0) == valid, (argv, err)
    if rc == 0:
        assert after[out] == (True, 0) and f"{out}/metrics.json" in after
        assert f"{out}/figures" not in after  # a forced run replaces the whole folder: nothing old stays
