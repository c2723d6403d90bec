#!/usr/bin/env bash
# The paired comparison of the README and docs/results.md for one scenario, from a fresh clone (after `make demo`
# has built .venv): every non-learned baseline once, then for each training seed the attention selector and the
# learned baselines trained with the scenario's own [training] budget (same drops, steps, batch and schedule), all
# evaluated on the same evaluation drops, then `beamattn compare` (learned rows averaged per drop over the seeds).
#
#   bash scripts/paired_runs.sh SCENARIO [SEEDS] [MODELS]
#   bash scripts/paired_runs.sh scenarios/vehicular-60.toml "1 2 3" "score-classifier mlp-large"
#
# Writes results/paired-NAME/{baselines,seed-S/{attention,MODEL,train-*},compare}/; a run already complete is kept
# (rerun = resume; delete a folder to redo it).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?usage: scripts/paired_runs.sh SCENARIO [SEEDS] [MODELS]}
seeds=${2:-1 2 3}
models=${3:-score-classifier mlp-large}
BA=${BEAMATTN:-.venv/bin/beamattn}
PY=${PYTHON:-.venv/bin/python}
name=$(basename "$scenario" .toml)
out=results/paired-$name
mkdir -p "$out"

# The scenario's policies but the learned ones (they need a checkpoint per seed).
baselines=$("$PY" - "$scenario" "$models" <<'EOF'
import sys
from beamattn.wireless.scenario import load_scenario
learned = {"attention", *sys.argv[2].split()}
print(",".join(p for p in load_scenario(sys.argv[1]).policies if p not in learned))
EOF
)
if [ ! -f "$out/baselines/metrics.json" ]; then
    echo "== $name: baselines ($baselines)"
    "$BA" run "$scenario" --policies "$baselines" --out "$out/baselines" --force --no-figures
fi
runs=("$out/baselines")
for s in $seeds; do
    d=$out/seed-$s
    mkdir -p "$d"
    # One run per learned policy and seed (so a model added later does not redo the others).
    if [ ! -f "$d/attention/metrics.json" ]; then
        echo "== $name seed $s: attention selector"
        "$BA" train "$scenario" --seed "$s" --out "$d/train-attention" --force
        "$BA" run "$scenario" --policies attention --checkpoint "$d/train-attention/selector.safetensors" \
            --out "$d/attention" --force --no-figures
    fi
    runs+=("$d/attention")
    for m in $models; do
        if [ ! -f "$d/$m/metrics.json" ]; then
            echo "== $name seed $s: $m"
            "$BA" train "$scenario" --model "$m" --seed "$s" --out "$d/train-$m" --force
            "$BA" run "$scenario" --policies "$m" --policy-checkpoint "$m=$d/train-$m/$m.safetensors" \
                --out "$d/$m" --force --no-figures
        fi
        runs+=("$d/$m")
    done
done
"$BA" compare "${runs[@]}" --reference attention --out "$out/compare" --force
