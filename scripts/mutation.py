"""Mutation testing of beamattn with mutmut 3: each module group mutated and run only with the tests that cover it.

    .venv/bin/python scripts/mutation.py                    # every group (hours on 2 cores): `make mutation`
    .venv/bin/python scripts/mutation.py core-attend metrics  # some groups
    .venv/bin/python scripts/mutation.py --collect          # only re-read the finished runs, rewrite the JSON

For every group a copy of the project is made in ``--workdir/<group>`` (the working tree is never touched)
with a ``[tool.mutmut]`` section that mutates the group's modules and selects the group's test files;
mutmut then runs, for each mutant, only the tests that executed the mutated function (its coverage stats).
The per-module score, ``killed / (killed + survived + no tests)`` (timeouts and mutants left unchecked by
an interrupted run are reported apart, in neither count), goes to ``--out`` (results/mutation.json), with the
names of the surviving mutants (``mutmut show NAME`` in the group's folder prints each diff).

Not mutated: the text of error messages (lines that are only a string, or a ``raise``): the conditions that
raise are mutated, and the tests match the messages' key words, but "XX"-wrapped message text would add
hundreds of mutants that say nothing about the numbers.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from beamattn.io import write_json_atomic  # noqa: E402

# group: (modules to mutate, test files that cover them). Only these tests run against the group's mutants.
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "core-attend": (["beamattn/core/attend.py", "beamattn/core/scores.py"], ["tests/test_attend.py"]),
    "core-sparsemax": (["beamattn/core/sparsemax.py"], ["tests/test_sparsemax.py"]),
    "core-multihead": (["beamattn/core/multihead.py"], ["tests/test_multihead.py"]),
    "core-positional": (["beamattn/core/positional.py"], ["tests/test_positional.py"]),
    "core-diagnostics": (["beamattn/core/diagnostics.py"], ["tests/test_diagnostics.py"]),
    "codebooks": (["beamattn/wireless/codebooks.py"], ["tests/test_codebooks.py", "tests/test_value_bounds.py"]),
    "metrics": (["beamattn/wireless/metrics.py"], ["tests/test_metrics_ci.py", "tests/test_policies.py"]),
    "measurement": (["beamattn/wireless/measurement.py"], ["tests/test_measurement.py"]),
    "selector": (["beamattn/wireless/selector.py"], ["tests/test_selector.py", "tests/test_selector_upa.py"]),
    # Each policy family has its own test file (bandits, CSI codebooks, tracking, the decision checks); the
    # learned and checkpointed policies (learned.py, attention.py's checkpoint reading) are covered by
    # test_learned / test_checkpoint, which train models and are too slow to run once per mutant here.
    "policies": (["beamattn/wireless/policies/*"],
                 ["tests/test_policies.py", "tests/test_policies_sweeps.py", "tests/test_policies_bandits.py",
                  "tests/test_policies_csi.py", "tests/test_policies_tracking.py", "tests/test_decision_checks.py"]),
    "linklevel-chain": (["beamattn/linklevel/chain.py"], ["tests/test_linklevel.py", "tests/test_estimation.py"]),
}


def group_tests(group: str) -> list[str]:
    """The test files of ``group``: those listed in GROUPS plus ``tests/test_mutants_<group>.py`` (with ``_`` for
    ``-``) when it exists, the tests written to kill this group's surviving mutants."""
    tests = list(GROUPS[group][1])
    extra = f"tests/test_mutants_{group.replace('-', '_')}.py"
    if (ROOT / extra).exists() and extra not in tests:
        tests.append(extra)
    return tests


# Error-message text (see the module docstring): a line that is only a (f-)string, or that raises.
DO_NOT_MUTATE = [r"^\s*raise\s", r"^\s*f?\"[^\"]*\"[\s),]*(from None)?[\s),]*$", r"^\s*f?'[^']*'[\s),]*$"]
COPY = ["beamattn", "tests", "scripts", "scenarios", "README.md"]
KILLED_CODES = {1, 3, 37}  # killed, pytest internal error, type check
# Timeouts are not counted as kills (on a loaded machine a slow start can time out): reported apart.
TIMEOUT_CODES = {36, 24, -24, 152, 255}
SURVIVED_CODES = {0}

# Surviving mutants that no test can tell from the original (equivalent), with the mutated line ("+...", as
# mutant_diff gives it) and why. A listed mutant whose diff no longer matches (the source changed and mutmut
# renumbered) counts as surviving again.
EQUIVALENT: dict[str, tuple[str, str]] = {
    # core-multihead
    "beamattn.core.multihead.xǁMultiHeadAttentionǁ_split__mutmut_10": (
        "+if list(idx) == list(range(idx[0], )):  # consecutive heads: a contiguous slice",
        "the contiguous fast path is never taken; the stacked slices it falls back to hold the same values"),
    "beamattn.core.multihead.xǁMultiHeadAttentionǁhead_outputs__mutmut_17": (
        "+heads, _ = self._attend_heads(query, key, value, mask, causal, True, bias)  # [B, Lq, sum(dv)]",
        "asks for the attention weights, which head_outputs discards"),
    # core-positional
    "beamattn.core.positional.x_sinusoidal_encoding_at__mutmut_32": (
        "+work = _work_dtype(None)", "the working dtype differs only on MPS (float32 there): same on CPU and CUDA"),
    # codebooks
    "beamattn.wireless.codebooks.x__horizontal_directions__mutmut_22": (
        "+return torch.stack([u_x, u_y, torch.zeros_like(u_y)], dim=+1)", "dim 1 is dim -1 for 1-D inputs"),
    "beamattn.wireless.codebooks.x__horizontal_directions__mutmut_4": (
        "+u_y = torch.clamp(u_y, -1.0, None)",
        "a rounding guard: u_y is the mean of two visible directions, so u_y <= 1 up to one rounding"),
    "beamattn.wireless.codebooks.x__horizontal_directions__mutmut_7": (
        "+u_y = torch.clamp(u_y, -1.0, )", "as _4: the upper clamp is a rounding guard"),
    "beamattn.wireless.codebooks.x_wide_codebook__mutmut_195": (
        "+beams = (w / torch.linalg.vector_norm(w, dim=0, keepdim=False)).T  # [G, N]",
        "[N, G] / [G] broadcasts like [N, G] / [1, G]"),
    "beamattn.wireless.codebooks.x_wide_codebook__mutmut_157": (
        "+sign = torch.cos(math.pi * (n + 1) * turns)  # [K, G] ±1",
        "cos(pi (n+1) t) = cos(pi (n-1) t) for integer t"),
    "beamattn.wireless.codebooks.x_wide_codebook__mutmut_162": (
        "+target = (mask.to(None) * sign).to(torch.complex128)  # [K, G]",
        ".to(None) keeps the bool mask; bool * float64 is the same float64 product"),
    "beamattn.wireless.codebooks.x_wide_codebook__mutmut_168": (
        "+offsets = torch.arange(n, ) - (n - 1) / 2  # [N]",
        "float32 offsets are half-integers, exact in float32, promoted to float64 in the phase"),
    "beamattn.wireless.codebooks.x_wide_codebook__mutmut_56": (
        "+psi = torch.remainder(psi + 0.5 + eps, 2.0) - 0.5 - eps  # [M] wrapped to [-1/2 - eps, 1/2 - eps)",
        "codebook directions are principal (|psi| <= 1/2): wrapping modulo 2 or 1 gives the same psi"),
    "beamattn.wireless.codebooks.x_wide_codebook__mutmut_135": (
        "+psi_fit = -0.5 + (torch.arange(k, ) + 0.5) / k  # [K]",
        "float32 fit points move by < 1e-7 of a period: the least-squares beams change by that, below any "
        "documented tolerance (the pattern stays real and flat)"),
    "beamattn.wireless.codebooks.x_wide_codebook__mutmut_42": (
        "+psi = narrow.directions[:, 1].to(None) * d  # [M] cycles per element",
        "float32 directions of a complex64 codebook keep the sort order and boundaries to 1e-7"),
    "beamattn.wireless.codebooks.x_user_codebook__mutmut_13": (
        "+t = torch.as_tensor(np.asarray(beams)) if (not isinstance(beams, Tensor)) or True else beams",
        "a CPU tensor read through numpy has the same values and dtype"),
    "beamattn.wireless.codebooks.xǁCodebookǁ__post_init____mutmut_20": (
        "+norms = torch.linalg.vector_norm(self.beams.detach().to(None), dim=-1)  # [M]",
        "norms in the beams' own precision: 1e-7 errors against a 1e-4 tolerance"),
    # metrics
    "beamattn.wireless.metrics.x_bootstrap_ci__mutmut_1": (
        "+def FUNCTION(per_drop: np.ndarray, num_resamples: int = 1001, seed: int = 0, level: float = 0.95",
        "1001 resamples are as valid a bootstrap as 1000 (only a test pinning the number could tell)"),
    "beamattn.wireless.metrics.x_bootstrap_ci__mutmut_2": (
        "+def FUNCTION(per_drop: np.ndarray, num_resamples: int = 1000, seed: int = 1, level: float = 0.95",
        "default seed; every caller (summarize, compare) passes its own"),
    "beamattn.wireless.metrics.x_bootstrap_ci__mutmut_19": (
        "+idx = rng.integers(per_drop.size, size=(num_resamples, per_drop.size))",
        "rng.integers(n) is rng.integers(0, n): the same draws"),
    "beamattn.wireless.metrics.x_decision_metrics__mutmut_1": (
        "+def FUNCTION(ep: Episode, dec: Decision, outage_db: float = 1.0) -> DecisionMetrics:",
        "default threshold; every caller (runner, api) passes the scenario's outage_db"),
    "beamattn.wireless.metrics.x_summarize__mutmut_1": (
        "+def FUNCTION(per_drop: dict[str, np.ndarray], loss_samples: np.ndarray, seed: int = 1) -> dict:",
        "default seed; the runner passes the scenario's"),
    "beamattn.wireless.metrics.x_used_beam__mutmut_8": (
        "+v = ep.codebook.beams.to(None, dec.beams.dtype)  # [M, N]",
        "device-only: the codebook and the decision share the CPU here (GPU runs are the device tests')"),
    "beamattn.wireless.metrics.x_used_beam__mutmut_10": (
        "+v = ep.codebook.beams.to(dec.beams.dtype)  # [M, N]", "device-only, as _8"),
    "beamattn.wireless.metrics.x_used_beam__mutmut_20": (
        '+match = torch.einsum("MN,BDN->BDM", v.conj(), dec.beams).abs().square()  # [B, D, M] |v_mᴴ w|²',
        "einsum subscripts in upper case name the same contraction"),
    "beamattn.wireless.metrics.x_used_beam__mutmut_32": (
        "+return torch.where(free & (best > 1 - SAME_BEAM_TOL), arg, index)",
        "differs only when |vᴴw|² equals 1 - 1e-4 exactly"),
    # core-sparsemax: integer ranks promote to the input's dtype; README's list for the others
    "beamattn.core.sparsemax.x__sparsemax_threshold_sort__mutmut_19": (
        "+rho = torch.arange(1, n + 1, device=z.device, dtype=None).view(shape)",
        "int64 ranks 1..n promote to z's dtype in rho * z_srt: the same values"),
    "beamattn.core.sparsemax.x__sparsemax_threshold_sort__mutmut_23": (
        "+rho = torch.arange(1, n + 1, device=z.device, ).view(shape)", "as _19"),
    "beamattn.core.sparsemax.x__sparsemax_threshold_sort__mutmut_30": (
        "+z_cumsum = z_srt.nan_to_num(neginf=None).cumsum(dim) - 1  # -inf entries never enter the support",
        "-inf entries sort last and are never in the support: what replaces them in the cumsum is never read"),
    "beamattn.core.sparsemax.x__sparsemax_threshold_sort__mutmut_31": (
        "+z_cumsum = z_srt.nan_to_num(neginf=1.0).cumsum(dim) - 1  # -inf entries never enter the support",
        "as _30"),
    "beamattn.core.sparsemax.x__sparsemax_threshold_sort__mutmut_40": (
        "+support = (rho * z_srt >= z_cumsum).sum(dim=dim, keepdim=True).clamp_min(1)",
        "at equality the extra entry equals tau (weight 0) and tau is unchanged"),
    "beamattn.core.sparsemax.x__sparsemax_threshold_sort__mutmut_51": (
        "+tau = z_cumsum.gather(dim, support - 1) / support.to(None)",
        "dividing by the int64 support gives the same floats"),
    "beamattn.core.sparsemax.xǁ_Entmax15ǁbackward__mutmut_18": (
        "+q = dx.sum(ctx.dim, keepdim=True) / gppr.sum(ctx.dim, keepdim=True).clamp_min(1.0)",
        "gppr = sqrt(p) sums to >= 1 when p sums to 1: the clamp never acts"),
    "beamattn.core.sparsemax.xǁ_Entmax15ǁforward__mutmut_18": (
        "+z = z.clamp_min(-3.0)", "entries below -1 (after the shift and halving) are never in the support"),
    "beamattn.core.sparsemax.xǁ_Entmax15ǁforward__mutmut_37": (
        "+rho = torch.arange(1, n + 1, device=z.device, dtype=None).view(shape)", "integer ranks promote"),
    "beamattn.core.sparsemax.xǁ_Entmax15ǁforward__mutmut_41": (
        "+rho = torch.arange(1, n + 1, device=z.device, ).view(shape)", "integer ranks promote"),
    # policies
    "beamattn.wireless.policies.omp.xǁOMPǁestimate__mutmut_59": (
        "+sel = torch.stack(support, +1)  # [S, k]", "dim 1 is dim -1 when stacking 1-D tensors"),
    "beamattn.wireless.policies.references.xǁRandomǁ__init____mutmut_1": (
        "+def FUNCTION(self, seed: int = 12346) -> None:", "another default seed is as random"),
    "beamattn.wireless.policies.references.xǁUniformǁdecide__mutmut_40": (
        "+return Decision(beams=w.expand(*shape, -1), index=torch.full(shape, -1, dtype=torch.long, ),",
        "device-only: the same on a CPU"),
    "beamattn.wireless.policies.csi_codebooks.xǁTypeIIL4QPSKǁ__init____mutmut_4": (
        "+super().__init__(beams=4, )", "phase_bits=2 is TypeII's default"),
    "beamattn.wireless.policies.csi_codebooks.xǁTypeIOversampledǁdecide__mutmut_7": (
        "+gains = (h_hat @ ep.codebook.beams.to(y.dtype).T).abs() * 2  # [B, D, M] |ĥᵀ v_m|²",
        "only the ranking of the gains is used: 2|x| orders beams as |x|²"),
    "beamattn.wireless.policies.learned.x__doc__mutmut_1": (
        "+spec = None", "builds class docstrings once, at import, before mutmut selects a mutant"),
}
NO_TESTS_CODES = {5, 33}


def _mutmut_section(modules: list[str], tests: list[str]) -> str:
    return "\n".join([
        "", "[tool.mutmut]",
        'source_paths = ["beamattn"]',
        f"only_mutate = {json.dumps(modules)}",
        # mutmut's copy (mutants/) gets only the sources and tests/: tests also load scripts and scenario files
        f"also_copy = {json.dumps([name for name in COPY if name not in ('beamattn', 'tests')])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        'pytest_add_cli_args = ["-q", "-p", "no:randomly", "-x"]',
        'process_isolation = "forkserver"  # torch is not fork-safe after a test run',
        "timeout_constant = 60.0  # seconds added to 15x the tests' measured time: a shared machine is slow",
        f"do_not_mutate_patterns = {json.dumps(DO_NOT_MUTATE)}",
        "", ])


def prepare(group: str, workdir: Path) -> Path:
    """A fresh copy of the project for ``group`` with its mutmut configuration."""
    modules, tests = GROUPS[group][0], group_tests(group)
    d = workdir / group
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, d / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "fixtures"))
        elif src.exists():
            shutil.copy2(src, d / name)
    keras_fixtures = ROOT / "tests" / "keras" / "fixtures"
    if keras_fixtures.exists():
        shutil.copytree(keras_fixtures, d / "tests" / "keras" / "fixtures")
    (d / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + _mutmut_section(modules, tests))
    (d / "tests.json").write_text(json.dumps(tests) + "\n")  # what this run used, for collect()
    return d


def _mutant_names(d: Path) -> dict[str, list[str]]:
    """Every mutant mutmut generated in ``d``, by source file (sorted: a stable order for sampling)."""
    return {str(m.relative_to(d / "mutants"))[: -len(".meta")]: sorted(json.loads(m.read_text())["exit_code_by_key"])
            for m in sorted((d / "mutants").rglob("*.py.meta"))}


def run_group(group: str, workdir: Path, jobs: int, timeout: float | None, sample: int = 1, keep: bool = False
              ) -> None:
    """mutmut on ``group``; with ``sample = k`` only every k-th mutant of each file (deterministic: a score
    estimate in 1/k of the time); ``keep`` reuses the folder (its mutants, stats and results) if it exists."""
    d = workdir / group
    if not (keep and (d / "mutants").exists()):
        d = prepare(group, workdir)
    else:  # keep the mutants (generating them takes minutes) but run with the current tests and test list
        modules, tests = GROUPS[group][0], group_tests(group)
        shutil.copytree(ROOT / "tests", d / "tests", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (d / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + _mutmut_section(modules, tests))
        (d / "tests.json").write_text(json.dumps(tests) + "\n")
    mutmut = Path(sys.executable).with_name("mutmut")
    cmd = [str(mutmut), "run", "--max-children", str(jobs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.time()
    with open(d / "mutmut.log", "a") as log:
        names: list[str] = []
        if sample > 1:
            if not (d / "mutants").exists():  # generate the mutants and the coverage stats, run none
                subprocess.run([*cmd, "no-such-mutant"], cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT,
                               check=False)
            names = [n for file_names in _mutant_names(d).values() for n in file_names[::sample]]
            (d / "sample").write_text(f"{sample}\n")
        print(f"== {group}: {' '.join(cmd)} in {d}" + (f" ({len(names)} sampled mutants)" if names else ""),
              flush=True)
        # mutmut in its own process group, so that stopping it stops its test workers too
        proc = subprocess.Popen([*cmd, *names], cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            print(f"   {group}: stopped after {timeout:.0f} s; the mutants checked so far are counted", flush=True)
    (d / "elapsed_s").write_text(f"{time.time() - t0:.0f}\n")


def recheck_group(group: str, workdir: Path, timeout: float = 600.0, match: str = "") -> None:
    """Run the group's *current* test files against the mutants its last run left surviving (or without tests).

    For a group whose source modules have not changed since its run (checked: a changed module is refused),
    this confirms new tests without redoing the whole run: the current ``tests/`` replace the copy's, each
    surviving mutant runs the group's test files that are new or changed since the run (its
    ``tests/test_mutants_<group>.py`` first, ``-x``) with ``MUTANT_UNDER_TEST`` set, as mutmut does, and a
    failing run (pytest exit 1) is recorded as killed in mutmut's ``.meta`` file. The unmutated code must
    pass those files first. The names it killed go to ``recheck.json`` in the group's folder.
    """
    d = workdir / group
    if not (d / "mutants").exists():
        raise SystemExit(f"mutation.py: --recheck {group}: no finished run in {d}; run the group first")
    stale = {str(src.relative_to(ROOT)) for pattern in GROUPS[group][0] for src in ROOT.glob(pattern)
             if not (d / src.relative_to(ROOT)).exists()
             or (d / src.relative_to(ROOT)).read_bytes() != src.read_bytes()}
    for rel in sorted(stale):
        print(f"   recheck {group}: {rel} changed since the group's run: its mutants are stale, skipped", flush=True)
    tests = group_tests(group)
    # d/tests is the snapshot the run used: a test file that is the same now could not kill a survivor then
    # (the tests are deterministic), so only new or changed files run, the group's test_mutants file first
    # and alone (quick), then the others if the mutant survives it.
    changed = [t for t in tests if not (d / t).exists() or (d / t).read_bytes() != (ROOT / t).read_bytes()]
    shutil.copytree(ROOT / "tests", d / "mutants" / "tests", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    first = [t for t in changed if Path(t).name.startswith("test_mutants_")]
    stages = [stage for stage in (first, [t for t in changed if t not in first]) if stage]
    if not stages:
        print(f"   recheck {group}: no test file changed since the run; nothing to do", flush=True)
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]

    def pytest_rc(mutant: str) -> int | None:
        rc: int | None = 0
        for stage in stages if mutant != "none" else [changed]:
            try:
                rc = subprocess.run([*cmd, *stage], cwd=d / "mutants", env={**env, "MUTANT_UNDER_TEST": mutant},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                return None
            if rc != 0:
                return rc
        return rc

    if pytest_rc("none") != 0:  # the unmutated code must pass, else a "kill" means nothing
        raise SystemExit(f"mutation.py: --recheck {group}: the tests {tests} fail on the unmutated code")
    record_path = d / "recheck.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"tests": tests, "killed": []}
    record["tests"] = changed
    for meta in sorted((d / "mutants").rglob("*.py.meta")):
        if str(meta.relative_to(d / "mutants"))[: -len(".meta")] in stale:
            continue
        data = json.loads(meta.read_text())
        rel = str(meta.relative_to(d / "mutants"))[: -len(".meta")]
        todo = [k for k, c in data["exit_code_by_key"].items() if c in SURVIVED_CODES | NO_TESTS_CODES
                and any(part in k for part in match.split(",")) and not (k in EQUIVALENT and EQUIVALENT[k][0] in mutant_diff(d, rel, k))]
        # (listed equivalents are skipped; --match limits the recheck to the names containing it)
        for key in todo:
            rc = pytest_rc(key)
            print(f"   recheck {key}: {'killed' if rc == 1 else 'survived' if rc == 0 else rc}", flush=True)
            if rc == 1:
                data["exit_code_by_key"][key] = 1
                record["killed"].append(key)
                meta.write_text(json.dumps(data, indent=4))  # after each kill: an interrupted recheck keeps them
    write_json_atomic(record_path, record)


def mutant_diff(d: Path, source: str, name: str) -> list[str]:
    """The lines of mutant ``name`` that differ from the original function, ``"-old"`` / ``"+new"`` (stripped),
    read from mutmut's trampolined copy ``d/mutants/<source>``."""
    text = (d / "mutants" / source).read_text()
    func = name.rsplit(".", 1)[-1]  # e.g. x_beam_gain__mutmut_3

    def body(fname: str) -> list[str]:
        lines = text.splitlines()
        head = next((i for i, line in enumerate(lines) if line.lstrip().startswith(f"def {fname}(")), None)
        if head is None:
            return []
        indent = len(lines[head]) - len(lines[head].lstrip())
        start = head
        while not lines[head].rstrip().endswith(":"):  # a signature over several lines ends with "...:"
            head += 1
        # the signature (default values are mutated too) with the function's own name taken out, then the body
        out = [line.replace(fname, "FUNCTION") for line in lines[start:head + 1]]
        for line in lines[head + 1:]:  # the body: blank lines or lines indented deeper than the def
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            out.append(line)
        return out

    orig = body(re.sub(r"__mutmut_\d+$", "__mutmut_orig", func))
    return [line[0] + line[1:].strip() for line in difflib.unified_diff(orig, body(func), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def collect(group: str, workdir: Path) -> dict | None:
    """Counts and surviving mutants of ``group`` from mutmut's ``.meta`` files; None if it has not run."""
    d = workdir / group
    metas = sorted((d / "mutants").rglob("*.py.meta")) if (d / "mutants").exists() else []
    if not metas:
        return None
    modules: dict[str, dict] = {}
    for meta in metas:
        rel = str(meta.relative_to(d / "mutants"))[: -len(".meta")]
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        killed = sum(c in KILLED_CODES for c in codes.values())
        survived = sorted(k for k, c in codes.items() if c in SURVIVED_CODES)
        # A listed equivalent mutant counts as such only while its diff is still the listed one.
        equivalent = {k: EQUIVALENT[k][1] for k in survived
                      if k in EQUIVALENT and EQUIVALENT[k][0] in mutant_diff(d, rel, k)}
        survived = [k for k in survived if k not in equivalent]
        no_tests = sorted(k for k, c in codes.items() if c in NO_TESTS_CODES)
        unchecked = sum(c is None for c in codes.values())
        timeouts = sorted(k for k, c in codes.items() if c in TIMEOUT_CODES)
        other = len(codes) - killed - len(survived) - len(no_tests) - unchecked - len(timeouts)
        checked = killed + len(survived) + len(no_tests) + len(equivalent)
        real = checked - len(equivalent)
        current = ROOT / rel
        stale = not current.exists() or current.read_bytes() != (d / rel).read_bytes()
        modules[rel] = {
            "stale": stale,  # the module changed since this run: these numbers are for an older version
            "mutants": len(codes), "checked": checked, "killed": killed, "survived": len(survived),
            "equivalent": len(equivalent), "no_tests": len(no_tests), "timeout": len(timeouts),
            "not_checked": unchecked, "other": other,
            "score": round(killed / real, 4) if real else None,
            "surviving": {k: mutant_diff(d, rel, k) for k in survived}, "equivalent_mutants": equivalent,
            "without_tests": no_tests, "timed_out": timeouts,
        }
    elapsed, sample, recheck = d / "elapsed_s", d / "sample", d / "recheck.json"
    tests = json.loads((d / "tests.json").read_text()) if (d / "tests.json").exists() else GROUPS[group][1]
    return {"tests": tests, "recheck": json.loads(recheck.read_text()) if recheck.exists() else None,
            "elapsed_s": int(elapsed.read_text()) if elapsed.exists() else None,
            "sample_every": int(sample.read_text()) if sample.exists() else 1, "modules": modules}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("groups", nargs="*", help=f"groups to run (default: all): {', '.join(GROUPS)}")
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "beamattn-mutation"),
                   help="where the copies and mutmut's state live (default: %(default)s)")
    p.add_argument("--out", default=str(ROOT / "results" / "mutation.json"), help="JSON summary (%(default)s)")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="mutmut --max-children")
    p.add_argument("--timeout", type=float, default=None, help="seconds per group; then the rest stays unchecked")
    p.add_argument("--collect", action="store_true", help="do not run: only summarise the finished runs")
    p.add_argument("--sample", type=int, default=1, help="check every k-th mutant of each file only (default 1: all)")
    p.add_argument("--keep", action="store_true", help="reuse a group's folder (mutants, stats, results) if present")
    p.add_argument("--match", default="", help="with --recheck: only the mutants whose name contains one of these (comma-separated)")
    p.add_argument("--markdown", action="store_true", help="print the results as a Markdown table and exit")
    p.add_argument("--recheck", action="store_true",
                   help="do not rerun mutmut: run the current tests against each group's surviving mutants only")
    args = p.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        p.error(f"unknown group(s) {unknown}; expected some of {list(GROUPS)}")
    workdir = Path(args.workdir)
    if args.markdown:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return 0
    if args.recheck:
        for group in args.groups or GROUPS:
            recheck_group(group, workdir, args.timeout or 600.0, args.match)
    elif not args.collect:
        for group in args.groups or GROUPS:
            run_group(group, workdir, args.jobs, args.timeout, args.sample, args.keep)
    out_path = Path(args.out)
    old = json.loads(out_path.read_text()) if out_path.exists() else {}
    groups = dict(old.get("groups", {}))
    for group in GROUPS:
        res = collect(group, workdir)
        if res is not None:
            groups[group] = res
    for res in groups.values():  # entries kept from an older JSON whose folder is gone cannot be verified
        for m in res["modules"].values():
            m.setdefault("stale", True)
    total = {k: sum(m.get(k, 0) for g in groups.values() for m in g["modules"].values() if not m.get("stale"))
             for k in ("mutants", "checked", "killed", "survived", "equivalent", "no_tests", "timeout", "not_checked")}
    real = total["checked"] - total["equivalent"]
    total["score"] = round(total["killed"] / real, 4) if real else None
    total["stale_modules_left_out"] = sorted(mod for g in groups.values() for mod, m in g["modules"].items()
                                             if m.get("stale"))
    summary = {"tool": "mutmut " + _mutmut_version(),
               "score": "killed / (killed + survived + no tests); equivalent mutants (EQUIVALENT) counted apart",
               "not_mutated": DO_NOT_MUTATE, "total": total, "groups": groups,
               "not_measured": [g for g in GROUPS if g not in groups]}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_path, summary)
    for g, res in groups.items():
        for mod, m in res["modules"].items():
            print(f"{g:18s} {mod:40s} {m['killed']:4d}/{m['checked']:4d} killed (score {m['score']})"
                  f"{' STALE (module changed since the run; not in the total)' if m.get('stale') else ''}, "
                  f"{m['survived']} survived, {m.get('equivalent', 0)} equivalent, {m['no_tests']} without tests, "
                  f"{m['timeout']} timed out, "
                  f"{m['not_checked']} not checked")
    print(f"total: {total}; wrote {out_path}")
    return 0


def markdown_table(summary: dict) -> str:
    """The per-module results of ``summary`` (the JSON this script writes) as a Markdown table."""
    rows = ["| group | module | checked (of all, sampling) | killed | survived | equivalent | no tests | timeout "
            "| score |", "|---|---|---|---|---|---|---|---|---|"]
    for g, res in summary["groups"].items():
        k = res.get("sample_every", 1)
        for mod, m in res["modules"].items():
            score = "—" if m["score"] is None else f"{100 * m['score']:.1f}%"
            stale = " (stale: changed since the run, not in the total)" if m.get("stale") else ""
            rows.append(f"| {g} | {mod.removeprefix('beamattn/')}{stale} | {m['checked']} of {m['mutants']}"
                        f"{f', 1 in {k}' if k > 1 else ''} | {m['killed']} | {m['survived']} | "
                        f"{m.get('equivalent', 0)} | {m['no_tests']} | {m['timeout']} | {score} |")
    t = summary["total"]
    rows.append(f"| **total** | | {t['checked']} | {t['killed']} | {t['survived']} | {t['equivalent']} | "
                f"{t['no_tests']} | {t['timeout']} | **{100 * t['score']:.1f}%** |")
    return "\n".join(rows)


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


if __name__ == "__main__":
    sys.exit(main())
