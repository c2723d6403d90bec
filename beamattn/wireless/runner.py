"""``beamattn run``: evaluate beam-selection policies on a scenario, with common random numbers.

Every policy sees the same channels, trajectories and measurement noise (one
episode per chunk of drops, shared by all policies), so differences between
policies come from the policies alone. Outputs are staged and moved into the
output folder only when everything succeeded: an interrupted or failed run
leaves nothing half-written.
"""

from __future__ import annotations

import csv
import io
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..device import describe_device
from ..io import write_json_atomic, write_text_atomic
from ..outdir import StagedDir, check_out
from ..plugins import loaded_plugins
from ..seeds import check_seed
from .channels.base import check_channel
from .codebooks import Codebook, dft_codebook, wide_codebook
from .compare import paired_difference
from .measurement import mix_seed, build_episode
from .metrics import KPI_COLUMNS, SUMMARY_KEYS, DecisionMetrics, decision_metrics, summarize
from .policies import Policy, make_policy
from .policies.checks import check_decision
from .scenario import Scenario

__all__ = ["run_scenario", "make_codebooks", "make_policies", "describe_policies", "channel_chunks", "episodes",
           "RunResult"]

STEP_FIELDS = ("drop", "decision", "time_s", "policy", "beam", "snr_db", "genie_db", "mrt_db", "loss_db", "se",
               "top1", "within_1db", "measured", "active", "entropy")


def make_codebooks(scn: Scenario) -> tuple[Codebook, Codebook | None]:
    """The scenario's narrow (Set A) codebook and, when asked for, its wide beams."""
    o = scn.codebook.oversampling
    narrow = dft_codebook(scn.array, o if scn.array.num_rows == 1 else (o, o))
    wide = wide_codebook(scn.array, scn.codebook.num_wide, narrow) if scn.codebook.num_wide else None
    return narrow, wide


def make_policies(scn: Scenario, names: list[str] | tuple[str, ...], checkpoint: str | None = None
                  ) -> dict[str, Policy]:
    """The policies ``names`` (each once: a name listed twice is refused) with the scenario's arguments.

    ``attention`` gets the scenario's ``[selector]`` config and ``checkpoint``; a checkpoint that
    disagrees with a field the scenario file set is refused here, before anything is computed, and so
    is one that needs more report history or phases than the scenario measures.
    """
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"policies: {name!r} is listed twice in {list(names)}; expected each policy once")
        seen.add(name)
    out = {}
    for name in names:
        kwargs = dict(scn.policy_args.get(name, {}))
        if name in ("attention", "attention-untrained"):
            kwargs.setdefault("config", scn.selector)
        if name == "attention":
            kwargs.setdefault("checkpoint", checkpoint)
            kwargs.setdefault("explicit", scn.selector_explicit)
            if kwargs["checkpoint"] is None:
                print("note: policy 'attention' has no --checkpoint: it runs the untrained selector "
                      "(train one with `beamattn train`)", file=sys.stderr)
        try:
            out[name] = make_policy(name, **kwargs)
        except TypeError as e:
            raise ValueError(f"policy {name!r}: bad arguments {kwargs} ({e})") from None
        if name == "attention" and out[name].checkpoint is not None:
            cfg, path = out[name].checkpoint_config, out[name].checkpoint
            if cfg.history > scn.measurement.history:
                raise ValueError(f"checkpoint {path}: made for selector history = {cfg.history}, but measurement "
                                 f"'history' = {scn.measurement.history}; expected history <= "
                                 f"{scn.measurement.history} (or a scenario with more report history)")
            if cfg.cophase and not scn.measurement.with_phase:
                raise ValueError(f"checkpoint {path}: made for selector cophase = true, but measurement "
                                 "'with_phase' = false; expected a scenario that reports phases")
    return out


def describe_policies(scn: Scenario, pols: dict[str, Policy]) -> dict[str, dict]:
    """What each policy ran with, for the records: the selector's effective config (with the checkpoint's
    path and SHA-256) for the attention policies, the scenario's ``[policy.NAME]`` arguments for others."""
    out = {}
    for name, pol in pols.items():
        describe = getattr(pol, "describe", None)
        out[name] = describe() if callable(describe) else dict(scn.policy_args.get(name, {}))
    return out


# Seed streams: evaluation drops come from stream 0 of the scenario seed; training and validation
# drops from streams 1 and 2 of the training seed, so they never coincide with evaluation drops.
EVAL_STREAM, TRAIN_STREAM, VALID_STREAM = 0, 1, 2


def channel_chunks(scn: Scenario, seed: int, num_drops: int, first_drop: int = 0,
                   device: torch.device | str = "cpu", stream: int = EVAL_STREAM):
    """Yield (first drop index, ChannelSample) for chunks of ``scn.chunk_drops`` drops, checked for NaN/Inf.

    Chunk ``c`` of ``stream`` is generated from its own seed, so drop ``i`` is the same whatever
    range of drops is asked for (``first_drop`` must be a multiple of ``chunk_drops``). The samples
    are generated on ``device`` (the back-ends draw their random numbers on the CPU, so the
    geometry is the same on every device). A file back-end (``backend = "file"``) returns the file's
    drops ``start ..`` in order instead: the seed then fixes the measurement noise only.
    """
    channel = scn.make_channel()
    c0 = first_drop // scn.chunk_drops
    for c in range(c0, c0 + -(-num_drops // scn.chunk_drops)):
        start = c * scn.chunk_drops
        n = min(scn.chunk_drops, first_drop + num_drops - start)
        if scn.backend == "file":  # the file's drops in order; the noise seeds below are the same as generated
            sample = channel.drops(stream, start, n, device=device)
        else:
            sample = channel.generate(scn.chunk_drops, seed=mix_seed(seed, (stream << 40) + c), device=device)
        if n < sample.h.shape[0]:  # the last chunk: keep the drops asked for, same numbers as a full chunk
            sample = type(sample)(sample.h[:n], sample.positions[:n], sample.times, sample.los[:n],
                                  sample.subcarrier_frequencies)
        check_channel(sample.h)
        yield start, sample


def episodes(scn: Scenario, seed: int, num_drops: int, first_drop: int = 0, device: torch.device | str = "cpu",
             stream: int = EVAL_STREAM):
    """Yield (first drop index, Episode, ChannelSample) for the chunks of :func:`channel_chunks`, on ``device``."""
    narrow, wide = make_codebooks(scn)
    narrow, wide = narrow.to(device), None if wide is None else wide.to(device)  # moved once, not per chunk
    for start, sample in channel_chunks(scn, seed, num_drops, first_drop, device, stream):
        c = (stream << 40) + start // scn.chunk_drops
        ep = build_episode(sample, narrow, wide, scn.measurement, scn.snr_db, seed=mix_seed(seed, (1 << 39) + c),
                           drop_offset=start)
        yield start, ep, sample


@dataclass
class RunResult:
    """What :func:`run_scenario` returns: per-policy KPI summaries (mean and 95% CI over drops), a trace of
    the first drop for the figures, the ``steps.csv`` rows and what each policy ran with."""

    summary: dict  # policy -> KPI summary
    trace: dict = field(default_factory=dict)  # one drop, for plots
    rows: list = field(default_factory=list)
    policies_config: dict = field(default_factory=dict)  # policy -> what it ran with (describe_policies)


def _table(summary: dict, scn: Scenario, reference: str | None = None) -> str:
    head = "| policy | " + " | ".join(h for _, h, _ in KPI_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(KPI_COLUMNS)
    if reference is not None:
        head += f" paired Δ loss vs {reference} dB [95% CI] |"
        rule += "---|"
    lines = [head, rule]
    for name, s in summary.items():
        cells = []
        for key, _, fmt in KPI_COLUMNS:
            mean, (lo, hi) = s[key]["mean"], s[key]["ci95"]
            half = (hi - lo) / 2
            cells.append(fmt.format(mean) + ("" if half < 5e-4 else " ±" + fmt.format(half)))
        if reference is not None:
            d = s["paired_vs_reference"]["loss_db"]
            cells.append("–" if name == reference else f"{d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _reference(reference: str | None, names: list[str]) -> str | None:
    """The policy every other one is paired with: ``reference`` (must be evaluated), or by default the
    exhaustive sweep when it is evaluated (the field's standard baseline), else none."""
    if reference is None:
        return "exhaustive" if "exhaustive" in names else None
    if reference not in names:
        raise ValueError(f"run: reference policy {reference!r} is not evaluated; expected one of {names}")
    return reference


def run_scenario(scn: Scenario, out_dir: str | Path | None, *, policies: list[str] | None = None,
                 seed: int | None = None, checkpoint: str | None = None, device: torch.device | str = "cpu",
                 progress: bool = True, figures: bool = True, force: bool = False,
                 reference: str | None = None) -> RunResult:
    """Evaluate policies on ``scn``; print the table; write metrics.json, steps.csv and figures/.

    ``reference``: every policy's per-drop loss to genie is paired with this policy's over the same drops
    (mean difference and 95% bootstrap CI, in the table and in each summary's ``paired_vs_reference``);
    default: ``exhaustive`` when it is evaluated.

    Channels, measurements, policies (the selector included) and per-decision KPIs are computed on
    ``device``; each chunk's per-decision KPIs are copied to the CPU once per policy for the tables,
    the CSV and the bootstrap.

    ``out_dir`` is checked before anything is computed (:func:`beamattn.outdir.check_out`); an existing
    results folder is replaced, as a whole, only with ``force``.
    """
    if out_dir is not None:
        check_out(out_dir, kind="dir", force=force, inputs=[checkpoint])
    device = torch.device(device)
    seed = scn.seed if seed is None else seed
    check_seed(seed)  # [0, 2^63): larger seeds would alias smaller ones
    names = list(policies or scn.policies)
    pols = make_policies(scn, names, checkpoint)
    reference = _reference(reference, names)
    if checkpoint is not None and "attention" not in pols:
        raise ValueError("run: '--checkpoint' was given but policy 'attention' is not evaluated")
    t_start = time.time()
    per_drop = {n: {k: [] for k in SUMMARY_KEYS} for n in names}
    losses = {n: [] for n in names}
    rows: list[tuple] = []
    trace: dict = {}
    num_chunks = -(-scn.drops // scn.chunk_drops)
    bar = _progress(num_chunks, f"{scn.name}: {scn.drops} drops x {len(names)} policies", progress)
    for start, ep, sample in episodes(scn, seed, scn.drops, device=device):
        times = sample.times.cpu()[ep.timeline.use_start].tolist()
        for name, pol in pols.items():
            dec = pol.decide(ep)
            check_decision(name, ep, dec)  # shapes, finite, unit-norm beams, ids in range: one line if not
            m = decision_metrics(ep, dec, scn.outage_db).to("cpu")  # one copy per policy and chunk
            for key in SUMMARY_KEYS:
                per_drop[name][key].append(getattr(m, key).mean(1).numpy())
            losses[name].append(m.loss_db.flatten().numpy())
            rows.extend(_rows(name, start, times, m))
            if start == 0:
                trace[name] = {"snr_db": m.snr_db[0].tolist(), "index": m.index[0].tolist(),
                               "genie_db": m.genie_db[0].tolist(), "mrt_db": m.mrt_db[0].tolist(),
                               "weights": None if dec.weights is None else dec.weights[0].cpu().tolist(),
                               "beam_mid": torch.view_as_real(dec.beams[0, ep.num_decisions // 2]).cpu().tolist(),
                               "snr_all": m.snr_db.flatten().tolist()}
            elif name in trace:
                trace[name]["snr_all"].extend(m.snr_db.flatten().tolist())
        if scn.backend == "sionna-rt":  # positions at the decisions, for the scene map (wireless.scene_map)
            trace.setdefault("_positions_use", []).extend(sample.positions[:, ep.timeline.use_start].cpu().tolist())
        if start == 0:
            trace["_times"] = times
            trace["_genie_index"] = ep.gain_use[0].argmax(-1).cpu().tolist()
            trace["_positions"] = sample.positions[0].cpu().tolist()
        bar.update(1)
    bar.close()
    summary = {}
    for name in names:
        pd = {k: np.concatenate(v) for k, v in per_drop[name].items()}
        summary[name] = summarize(pd, np.concatenate(losses[name]), seed=seed)
    for name, pol in pols.items():  # the size of a CSI report, for policies that send one (NR Type I/II, ...)
        if callable(getattr(pol, "report_bits", None)):
            values = getattr(pol, "report_values", None)
            summary[name]["report"] = {"bits": pol.report_bits(ep),  # None: unquantised coefficients
                                       "complex_values": values(ep) if callable(values) else None}
    if reference is not None:
        ref = np.concatenate(per_drop[reference]["loss_db"])
        for name in names:  # paired over the same drops: common random numbers make the pairing exact
            summary[name]["paired_vs_reference"] = {
                "reference": reference,
                "loss_db": paired_difference(np.concatenate(per_drop[name]["loss_db"]), ref, seed=seed)}
    elapsed = time.time() - t_start
    table = _table(summary, scn, reference)
    print(f"\n{scn.name}: {scn.drops} drops, seed {seed}, transmit SNR {scn.snr_db} dB, "
          f"{scn.codebook.oversampling}x DFT codebook of {make_codebooks(scn)[0].num_beams} beams, "
          f"Set B {ep.set_b.numel()} beams, mean ± 95% CI half-width over drops ({elapsed:.1f} s)")
    print(table)
    result = RunResult(summary=summary, trace=trace, rows=rows, policies_config=describe_policies(scn, pols))
    if out_dir is not None:
        _write_outputs(Path(out_dir), scn, seed, names, checkpoint, summary, table, rows, trace, elapsed, figures,
                       describe_device(device), force=force, policies_config=result.policies_config)
    return result


def _rows(name: str, start: int, times: list, m: DecisionMetrics):
    b, d = m.snr_db.shape
    cols = [m.snr_db, m.genie_db, m.mrt_db, m.loss_db, m.se, m.top1, m.within_1db, m.overhead, m.active, m.entropy]
    cols = [c.numpy() for c in cols]
    idx = m.index.numpy()
    for i in range(b):
        for j in range(d):
            yield (start + i, j, round(times[j], 6), name, int(idx[i, j]), *(round(float(c[i, j]), 4) for c in cols))


def _write_outputs(out: Path, scn: Scenario, seed: int, names, checkpoint, summary, table, rows, trace, elapsed,
                   figures: bool, device: str = "cpu", force: bool = False, policies_config: dict | None = None
                   ) -> None:
    """Write the results into a staging folder beside ``out`` that replaces ``out`` as a whole when complete."""
    with StagedDir(out, force=force, command="run") as stage:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(STEP_FIELDS)
        w.writerows(rows)
        write_text_atomic(stage / "steps.csv", buf.getvalue())
        meta = {
            "scenario": scn.to_dict(), "seed": seed, "policies": names, "checkpoint": checkpoint,
            "policies_config": policies_config or {},  # what ran: a checkpoint's selector config, not the scenario's
            "device": device, "elapsed_s": elapsed, "versions": {"beamattn": __version__, "torch": torch.__version__,
                                               "numpy": np.__version__, "python": platform.python_version()},
            "metrics": summary, "table_markdown": table,
            "plugins": loaded_plugins(),  # policy modules of the user's (beamattn.plugins): name, file, SHA-256
        }
        if callable(getattr(scn.channel, "describe", None)):  # a file back-end: which files, by SHA-256
            meta["channel_files"] = scn.channel.describe()
        write_json_atomic(stage / "metrics.json", meta)
        if figures:
            from .plots import run_figures

            run_figures(trace, summary, scn, stage / "figures")
    print(f"wrote {out / 'metrics.json'}, {out / 'steps.csv'}" + (f" and {out / 'figures'}/" if figures else ""),
          file=sys.stderr)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", file=sys.stderr, leave=False, disable=None)  # off when not a TTY
