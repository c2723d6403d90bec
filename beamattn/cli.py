"""The ``beamattn`` command line.

Subcommands: ``run`` (evaluate policies on a scenario), ``train`` (fit the
attention selector or a learned baseline), ``compare`` (paired differences of
runs), ``channels`` (export channels for other tools), ``export`` (a trained
selector for Keras/TensorFlow), ``demo`` (the attention-core demo).
Errors in user input are printed as one line naming the field and the value,
with exit code 2 — never a traceback. Output paths are checked before anything
is computed, and results are written whole (see :mod:`beamattn.outdir`):
existing results are replaced only with ``--force``. Ctrl-C prints one line and
exits 130; SIGTERM removes the half-written output and exits 143.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from pathlib import Path
from typing import Sequence

from . import __version__


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _pos_int(text: str) -> int:
    value = _nonneg_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _seed(text: str) -> int:
    from .seeds import check_seed

    value = _nonneg_int(text)
    try:
        return check_seed(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _policy_checkpoint(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (a policy name and its checkpoint), got {text!r}")
    return name.strip(), path.strip()


def _name_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",")]
    if not any(names):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    if not all(names):  # 'genie,,mrt' or 'genie,': a name left out by mistake, as for --snr-db
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names without empty items, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beamattn",
        description="Attention for wireless beam selection, on one shared attention core.",
    )
    parser.add_argument("--version", action="version", version=f"beamattn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="evaluate beam-selection policies on a scenario (table, JSON, CSV, figures)",
                         description="Evaluate policies with common random numbers; writes DIR/metrics.json, "
                                     "DIR/steps.csv and DIR/figures/.")
    run.add_argument("scenario", help="scenario TOML file (see scenarios/)")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--seed", type=_seed, default=None, help="evaluation seed (default: the scenario's)")
    run.add_argument("--policies", type=_name_list, default=None, help="comma-separated policy names")
    run.add_argument("--checkpoint", default=None, help="trained selector (.safetensors) for policy 'attention'")
    run.add_argument("--policy-checkpoint", type=_policy_checkpoint, action="append", default=[], metavar="NAME=PATH",
                     help="checkpoint of a learned baseline (`beamattn train --model NAME`), e.g. mlp=DIR/mlp.safetensors;"
                          " repeatable")
    run.add_argument("--drops", type=_pos_int, default=None, help="number of drops (default: the scenario's)")
    run.add_argument("--reference", default=None,
                     help="policy that every other one is paired with over the same drops (loss difference and "
                          "95%% CI in the table); default: exhaustive when it is evaluated")
    run.add_argument("--no-figures", action="store_true", help="skip the figures")
    run.add_argument("--force", action="store_true", help="replace an existing results folder (as a whole)")

    train = sub.add_parser("train", help="train the attention selector (or a learned baseline) on a scenario",
                           description="Maximise spectral efficiency at the time of use on training seeds "
                                       "disjoint from the evaluation seeds; writes DIR/selector.safetensors. "
                                       "With --model NAME: a learned baseline on the same drops and budget, "
                                       "written to DIR/NAME.safetensors.")
    train.add_argument("scenario", help="scenario TOML file")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--seed", type=_seed, default=None, help="training seed (default: the scenario's)")
    train.add_argument("--steps", type=_pos_int, default=None, help="optimiser steps (default: the scenario's)")
    train.add_argument("--force", action="store_true",
                       help="replace an existing results folder, and discard an interrupted training's progress")
    train.add_argument("--model", default="attention",
                       help="what to train: attention (the selector, default) or a learned baseline: "
                            "mlp, mlp-soft, mlp-large, lstm, lstm-large, score-classifier, score-classifier-hard, "
                            "score-classifier-large")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted training from its saved progress (same final checkpoint as "
                            "an uninterrupted run)")

    comp = sub.add_parser("compare", help="paired differences of policies over the same drops (runs of one scenario)",
                          description="Reads the metrics.json and steps.csv of `beamattn run` folders of one "
                                      "scenario and evaluation seed (one per training seed of the learned policies) "
                                      "and prints each policy's paired difference against --reference with its 95% "
                                      "bootstrap CI over drops; writes DIR/compare.json and DIR/compare.png.")
    comp.add_argument("runs", nargs="+", help="run folders written by `beamattn run`; FOLDER::OLD=NEW renames policy "
                      "OLD of that run (e.g. the attention policy of a checkpoint trained on another scenario)")
    comp.add_argument("--reference", required=True, help="the policy every other one is compared with")
    comp.add_argument("--metric", default="loss_db", choices=("loss_db", "snr_db", "se", "top1", "within_1db"),
                      help="per-drop KPI to compare (default loss_db)")
    comp.add_argument("--out", default=None, help="output folder for compare.json and compare.png (optional)")
    comp.add_argument("--force", action="store_true", help="replace an existing output folder (as a whole)")

    chans = sub.add_parser("channels", help="export a scenario's channels, positions, times and beam gains (.npz)")
    chans.add_argument("scenario", help="scenario TOML file")
    chans.add_argument("--out", required=True, help="output .npz file")
    chans.add_argument("--seed", type=_seed, default=None, help="seed (default: the scenario's)")
    chans.add_argument("--drops", type=_pos_int, default=None, help="number of drops (default: the scenario's)")
    chans.add_argument("--force", action="store_true", help="replace an existing file")

    exp = sub.add_parser("experiment", help="run a claim-of-the-write-up experiment, or 'all' with a report",
                         description="Each experiment writes DIR/NAME/result.json and figures; 'all' also writes "
                                     "DIR/report.md. NAME 'list' prints the names.")
    exp.add_argument("name", help="experiment name, 'all' or 'list'")
    exp.add_argument("--out", default="results/experiments", help="output folder (default: results/experiments)")
    exp.add_argument("--seed", type=_seed, default=0, help="seed (default: 0)")
    exp.add_argument("--small", action="store_true", help="the small, fast version (as in the tests)")
    exp.add_argument("--seeds", type=_pos_int, default=None,
                     help="replicates per experiment, seeds SEED + r*1000003 (default: 1 with --small, else each "
                          "experiment's own: 3, or 5 for experiments 4, 9, 13); verdicts need every criterion's 95%% CI")
    exp.add_argument("--workers", type=_pos_int, default=1,
                     help="'all': experiments run at once in worker processes (default 1; each uses one thread)")
    exp.add_argument("--force", action="store_true",
                     help="replace existing results (DIR/NAME, or DIR for 'all'), as a whole")

    sweep = sub.add_parser("sweep", help="run a grid of scenario parameters x policies x seeds (local pool or Dask)",
                           description="Each (cell, seed) is a task whose result is written atomically to "
                                       "DIR/tasks/; writes DIR/summary.json and DIR/figures/. See "
                                       "beamattn.wireless.sweep for the file format and SLURM (dask-jobqueue).")
    sweep.add_argument("sweep", help="sweep TOML file (see scenarios/sweeps/)")
    sweep.add_argument("--out", required=True, help="output folder")
    where = sweep.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_pos_int, default=1,
                       help="local worker processes (default 1: in this process; N > 1: a Dask LocalCluster)")
    where.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, tcp://HOST:PORT")
    sweep.add_argument("--resume", action="store_true", help="keep valid finished tasks, run the rest")
    sweep.add_argument("--no-figures", action="store_true", help="skip the figures")

    link = sub.add_parser("linklevel", help="BLER and throughput of policies through a Sionna 5G LDPC/QAM/OFDM link",
                          description="Per policy and transmit SNR ρ (dB): BLER, blocks, errors and throughput in "
                                      "DIR/bler.json, a BLER-vs-SNR plot DIR/bler.png and a throughput table. "
                                      "Channels and measurements are those of `beamattn run` (same seed).")
    link.add_argument("scenario", help="scenario TOML file")
    link.add_argument("--out", required=True, help="output folder")
    link.add_argument("--policies", type=_name_list, default=None, help="comma-separated policy names")
    link.add_argument("--snr-db", default=None,
                      help="comma-separated transmit SNRs ρ in dB, e.g. --snr-db=-5,0,5 "
                           "(default: the scenario's snr_db -10, -5, 0, +5)")
    link.add_argument("--checkpoint", default=None, help="trained selector (.safetensors) for policy 'attention'")
    link.add_argument("--policy-checkpoint", type=_policy_checkpoint, action="append", default=[],
                      metavar="NAME=PATH", help="checkpoint of a learned baseline, e.g. mlp=DIR/mlp.safetensors; "
                                                "repeatable")
    link.add_argument("--seed", type=_seed, default=None, help="seed (default: the scenario's)")
    link.add_argument("--drops", type=_pos_int, default=None, help="number of drops (default: the scenario's)")
    link.add_argument("--bits-per-symbol", type=int, choices=(2, 4, 6), default=2, help="QAM order (default 2)")
    link.add_argument("--code-rate", type=float, default=0.5, help="LDPC code rate (default 0.5)")
    link.add_argument("--subcarriers", type=_pos_int, default=72, help="subcarriers per slot (default 72)")
    link.add_argument("--estimator", choices=("ls", "lmmse", "perfect"), default="ls",
                      help="channel estimation: ls (linear interpolation), lmmse (joint time-frequency, from the "
                           "effective channel's correlation) or perfect (default ls)")
    link.add_argument("--max-blocks", type=_pos_int, default=2000, help="codewords per point at most (default 2000)")
    link.add_argument("--target-errors", type=_pos_int, default=100,
                      help="stop a point after this many block errors (default 100)")
    link.add_argument("--force", action="store_true", help="replace an existing results folder (as a whole)")

    export = sub.add_parser("export", help="convert a trained selector for another framework (Keras/TensorFlow)",
                            description="Write CHECKPOINT (from `beamattn train`) as a file that "
                                        "beamattn.keras.AttentionSelectorLayer.from_file loads in a TensorFlow "
                                        "environment (no torch needed there).")
    export.add_argument("checkpoint", help="selector checkpoint (.safetensors) written by `beamattn train`")
    export.add_argument("--format", required=True, choices=("keras",), help="target framework: keras")
    export.add_argument("--out", required=True, help="output .safetensors file")
    export.add_argument("--scenario", default=None,
                        help="scenario TOML whose codebook the selector uses (default: a ULA DFT codebook with "
                             "M/N-fold oversampling, as in every shipped scenario)")
    export.add_argument("--force", action="store_true", help="replace an existing file (never the checkpoint itself)")

    demo = sub.add_parser("demo", help="run the attention-core demo: softmax vs sparsemax vs top-k, with plots",
                          description="Retrieval among distractors and score scaling, on beamattn.core. "
                                      "Writes demo.json and figures/ under --out.")
    demo.add_argument("--out", default="results/demo", help="output folder (default: results/demo)")
    demo.add_argument("--seed", type=_seed, default=0, help="seed that fixes every number (default: 0)")
    demo.add_argument("--trials", type=_pos_int, default=400, help="random trials per point (default: 400)")
    demo.add_argument("--force", action="store_true", help="replace an existing results folder (as a whole)")
    for computing in (run, train, chans, exp, sweep, link, demo):
        # Checked in _dispatch (beamattn.device.resolve_device): an unknown or absent device is one error line.
        computing.add_argument("--device", default="cpu",
                               help="where tensors live and compute: cpu (default), cuda, cuda:N or mps")
    for with_policies in (run, train, sweep, link):
        # Loaded in _dispatch before the scenario (its policy list may name the plugin's policies).
        with_policies.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                                   help="a module that registers policies (beamattn.wireless.policies.register): a "
                                        "module name importable from sys.path or the path of a .py file; repeatable")
    return parser


def _load(path: str, drops: int | None = None, policy_checkpoints: list[tuple[str, str]] = ()):
    """The scenario at ``path`` with the command line's ``--drops`` and ``--policy-checkpoint NAME=PATH``
    applied, validated like the file's own values (range, memory, policy names)."""
    from .api import with_drops
    from .wireless.scenario import _check_policy_names, load_scenario

    scn = load_scenario(path)
    if drops is not None:  # checked as the file's value: range, memory, drops held by a channel file
        scn = with_drops(scn, drops, "--drops")
    names = [name for name, _ in policy_checkpoints]
    _check_policy_names(names)
    if len(set(names)) != len(names):
        raise ValueError(f"--policy-checkpoint: a policy is named twice in {names}; expected one checkpoint each")
    for name, ckpt in policy_checkpoints:
        if name in ("attention", "attention-untrained"):
            raise ValueError(f"--policy-checkpoint: {name!r} takes its checkpoint from --checkpoint")
        scn.policy_args[name] = {**scn.policy_args.get(name, {}), "checkpoint": ckpt}
    return scn


def _channel_files(scenario: str) -> list[str]:
    """The channel files a ``backend = "file"`` scenario reads (resolved), [] for other back-ends; a scenario that
    does not load gives [] here (the command itself reports why)."""
    from .wireless.scenario import ScenarioError, load_scenario

    try:
        chan = load_scenario(scenario).channel
    except (ScenarioError, ValueError, OSError):
        return []
    return [str(f) for f in (getattr(chan, "path", None), getattr(chan, "train_path", None)) if f]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a usage error: say what the commands are
        parser.print_help(sys.stderr)
        return 2
    from .outdir import Terminated, install_sigterm_handler

    previous = install_sigterm_handler()  # SIGTERM -> Terminated: staging folders are removed on the way out
    cmd = args.command

    def one_line_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        print(f"beamattn {cmd}: warning: {str(message).strip()}".replace("\n", " "), file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warning
            return _dispatch(args)
    except (ValueError, TypeError, OSError) as e:
        # User-facing errors (scenario fields, checkpoints, arguments, output paths) are one clear line.
        print(f"beamattn {cmd}: error: {str(e).strip()}".replace("\n", " "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"beamattn {cmd}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"beamattn {cmd}: terminated (SIGTERM); no partial results were left", file=sys.stderr)
        return 143
    finally:
        if previous is not None:  # main() called from a program or a test: give its handler back
            signal.signal(signal.SIGTERM, previous)


def _check_outputs(args: argparse.Namespace) -> None:
    """Check every output path before any input is loaded or anything computed (one ValueError line)."""
    from .outdir import check_out

    c = args.command
    force = getattr(args, "force", False)
    if c in ("run", "linklevel"):
        check_out(args.out, kind="dir", force=force,
                  inputs=[args.scenario, args.checkpoint, *(p for _, p in args.policy_checkpoint)])
    elif c == "compare":
        if args.out is not None:
            from .wireless.compare import parse_run_argument

            check_out(args.out, kind="dir", force=force, inputs=[parse_run_argument(r)[0] for r in args.runs])
    elif c == "train":
        check_out(args.out, kind="dir", force=force, inputs=[args.scenario])
    elif c == "channels":
        # A file back-end's own channel files are inputs too: --force must not overwrite what it reads.
        check_out(args.out, kind="file", force=force, inputs=[args.scenario, *_channel_files(args.scenario)])
    elif c == "export":
        if Path(args.out).suffix != ".safetensors":  # before staging: the error names the user's path
            raise ValueError(f"export: argument '--out' = {args.out!r}; expected a file name ending in .safetensors")
        check_out(args.out, kind="file", force=force, inputs=[args.checkpoint, args.scenario])
    elif c == "demo":
        check_out(args.out, kind="dir", force=force)
    elif c == "sweep":
        check_out(args.out, kind="dir", continue_existing=args.resume, inputs=[args.sweep],
                  hint="pass --resume to continue it")
    elif c == "experiment" and args.name != "list":
        from .experiments import EXPERIMENTS

        if args.name == "all":
            check_out(args.out, kind="dir", force=force)
        elif args.name in EXPERIMENTS:  # an unknown name: run_experiment's error line, before anything runs
            check_out(Path(args.out) / args.name, kind="dir", force=force)


def _dispatch(args: argparse.Namespace) -> int:
    device = None
    if hasattr(args, "device"):
        from .device import resolve_device

        device = resolve_device(args.device)  # ValueError -> one line, exit 2
    _check_outputs(args)
    if getattr(args, "plugin", None):
        from .plugins import load_plugins

        load_plugins(args.plugin)  # one error line naming a plugin that fails to import or reuses a name
    if args.command == "demo":
        from .demo import run_demo

        run_demo(args.out, seed=args.seed, trials=args.trials, device=device, force=args.force)
    elif args.command == "run":
        from .wireless.runner import run_scenario

        run_scenario(_load(args.scenario, args.drops, args.policy_checkpoint), args.out, policies=args.policies,
                     seed=args.seed, checkpoint=args.checkpoint, figures=not args.no_figures, device=device,
                     force=args.force, reference=args.reference)
    elif args.command == "train" and args.model == "attention":
        from .wireless.train import train_selector

        train_selector(_load(args.scenario), args.out, seed=args.seed, steps=args.steps, device=device,
                       force=args.force, resume=args.resume)
    elif args.command == "train":
        from .outdir import StagedDir
        from .wireless.learned import LEARNED_MODELS
        from .wireless.learned.train import train_learned

        if args.model not in LEARNED_MODELS:
            raise ValueError(f"train: argument '--model' = {args.model!r}; expected 'attention' or one of "
                             f"{list(LEARNED_MODELS)}")
        if args.resume:
            raise ValueError(f"train: '--resume' continues a selector training; a learned baseline "
                             f"({args.model!r}) trains in one go")
        scn = _load(args.scenario)
        with StagedDir(args.out, force=args.force, command="train") as stage:  # replaces --out when complete
            log = train_learned(scn, stage, model=args.model, seed=args.seed, steps=args.steps, device=device)
        print(f"wrote {Path(args.out) / (args.model + '.safetensors')} ({log.get('parameters', '?')} parameters); "
              f"evaluate it with `beamattn run {args.scenario} --policy-checkpoint "
              f"{args.model}={Path(args.out) / (args.model + '.safetensors')} --policies {args.model},...`",
              file=sys.stderr)
    elif args.command == "compare":
        _compare(args)
    elif args.command == "experiment":
        from .experiments import EXPERIMENTS, run_all, run_experiment

        if args.name == "list":
            for name in sorted(EXPERIMENTS, key=lambda n: EXPERIMENTS[n].order):
                print(f"{name:28s} {EXPERIMENTS[name].title}")
        elif args.name == "all":
            results = run_all(args.out, small=args.small, seed=args.seed, device=device, force=args.force,
                              num_seeds=args.seeds, workers=args.workers)
            print(f"{sum(r.supported for r in results)} of {len(results)} claims supported; report: "
                  f"{args.out}/report.md")
        else:
            r = run_experiment(args.name, args.out, small=args.small, seed=args.seed, device=device,
                               force=args.force, num_seeds=args.seeds)
            print(f"{r.name}: {'supported' if r.supported else 'NOT supported'} — {r.verdict}")
    elif args.command == "sweep":
        from .wireless.sweep import load_sweep, run_sweep

        run_sweep(load_sweep(args.sweep), args.out, workers=args.workers, scheduler=args.scheduler,
                  resume=args.resume, figures=not args.no_figures, device=str(device), plugins=args.plugin)
    elif args.command == "linklevel":
        from .linklevel.chain import LinkConfig
        from .linklevel.run import parse_snr_list, run_linklevel

        cfg = LinkConfig(num_subcarriers=args.subcarriers, bits_per_symbol=args.bits_per_symbol,
                         code_rate=args.code_rate, estimator=args.estimator)
        run_linklevel(_load(args.scenario, args.drops, args.policy_checkpoint), args.out, policies=args.policies,
                      snr_db_list=parse_snr_list(args.snr_db), checkpoint=args.checkpoint, max_blocks=args.max_blocks,
                      target_block_errors=args.target_errors, seed=args.seed, config=cfg, device=device,
                      force=args.force)
    elif args.command == "channels":
        from .wireless.export import export_channels

        export_channels(_load(args.scenario, args.drops), args.out, seed=args.seed, device=device, force=args.force)
    elif args.command == "export":
        from .keras import read_selector_file
        from .outdir import StagedFile
        from .wireless.keras_export import export_keras

        out = Path(args.out)
        with StagedFile(out, force=args.force) as tmp:  # replaces out when the file is complete
            export_keras(args.checkpoint, tmp, scenario=args.scenario)
        f = read_selector_file(out)  # what the Keras layer will load
        cfg = f.selector
        print(f"wrote {out}: Keras selector ({cfg['normalizer']}, {cfg['mode']}), M={f.num_beams} beams, "
              f"N={f.num_ant} antennas, Set B {len(f.set_b)} beams; codebook: {f.metadata['source']}")
    return 0


def _compare(args: argparse.Namespace) -> None:
    from .io import write_json_atomic, write_text_atomic
    from .outdir import StagedDir
    from .wireless.compare import compare_runs, format_comparison, plot_comparison

    result = compare_runs(args.runs, args.reference, metric=args.metric)
    table = format_comparison(result)
    print(f"{result['metric']} ({result['better']} is better), paired over "
          f"{result['policies'][args.reference]['diff']['num_drops']} drops, {len(args.runs)} run(s):")
    print(table)
    if args.out is not None:
        with StagedDir(args.out, force=args.force, command="compare") as stage:
            write_json_atomic(stage / "compare.json", result)
            write_text_atomic(stage / "compare.md", table + "\n")
            plot_comparison(result, stage / "compare.png")
        print(f"wrote {Path(args.out) / 'compare.json'}, compare.md and compare.png", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
