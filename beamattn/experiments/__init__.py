"""Experiments that reproduce, measure and plot each claim of the attention write-up.

``beamattn experiment NAME --out DIR`` runs one; ``beamattn experiment all --out DIR``
runs all of them and writes ``DIR/report.md`` with every figure and verdict.
"""

from importlib import import_module
from pkgutil import iter_modules

from .registry import EXPERIMENTS, ExperimentResult, Outcome, experiment, run_experiment
from .report import run_all

# Each module named e<NN>_*.py registers its experiments on import.
for _m in sorted(m.name for m in iter_modules(__path__) if m.name.startswith("e") and m.name[1:3].isdigit()):
    import_module(f"{__name__}.{_m}")

__all__ = ["EXPERIMENTS", "ExperimentResult", "Outcome", "experiment", "run_experiment", "run_all"]
