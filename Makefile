# Two commands on a fresh clone:  `make demo` (main job)  and  `make test`.
# Each creates or reuses the virtual environment .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# TensorFlow cannot share .venv with Sionna 2.2 (h5py pins): the Keras layer is tested in its own.
VENV_TF  ?= .venv-tf
STAMP_TF := $(VENV_TF)/.installed
SCENARIO ?= scenarios/vehicular-60.toml
NAME     := $(basename $(notdir $(SCENARIO)))
SEED     ?= 0

.PHONY: demo core-demo experiments test test-slow test-keras bench mutation docs tutorials clean
.PHONY: raytraced raytraced-crosssite test-raytracing

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The small CPU build of torch first; a bare `torch` requirement would pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Main job: train the selector on the default scenario, then evaluate every policy on it.
demo: $(STAMP)
	$(VENV)/bin/beamattn train $(SCENARIO) --out results/train-$(NAME) --force
	$(VENV)/bin/beamattn run $(SCENARIO) --checkpoint results/train-$(NAME)/selector.safetensors --out results/$(NAME) --force

# Every claim of the attention write-up: figures, numbers, verdicts and results/experiments/report.md.
experiments: $(STAMP)
	$(VENV)/bin/beamattn experiment all --out results/experiments --seed $(SEED) --force --workers 2

core-demo: $(STAMP)
	$(VENV)/bin/beamattn demo --out results/core-demo --seed $(SEED) --force

# The torch suite, then the Keras layer's suite in its own TensorFlow environment (.venv-tf).
test: $(STAMP) $(STAMP_TF)
	$(PY) -m pytest -q
	$(VENV_TF)/bin/python -m pytest -q tests/keras

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# beamattn.keras without torch or Sionna: TensorFlow, NumPy, safetensors and the package itself (--no-deps).
$(STAMP_TF): pyproject.toml
	$(PYTHON) -m venv $(VENV_TF)
	$(VENV_TF)/bin/python -m pip install -q --upgrade pip
	$(VENV_TF)/bin/python -m pip install -q tensorflow-cpu==2.21.0 numpy safetensors pytest
	$(VENV_TF)/bin/python -m pip install -q --no-deps -e .
	touch $(STAMP_TF)

test-keras: $(STAMP_TF)
	$(VENV_TF)/bin/python -m pytest -q tests/keras

# Mutation testing (mutmut 3, CPU heavy: hours for every group on 2 cores). Each module group is mutated in a copy
# of the project and run only with the tests that cover it; the scores go to results/mutation.json.
# `make mutation MUTATION_GROUPS="core-attend metrics" MUTATION_JOBS=2` runs some groups (scripts/mutation.py).
STAMP_MUT       := $(VENV)/.installed-mutation
MUTATION_GROUPS ?=
MUTATION_JOBS   ?= 1
$(STAMP_MUT): $(STAMP)
	$(PY) -m pip install -q -e '.[test,mutation]'
	touch $(STAMP_MUT)

mutation: $(STAMP_MUT)
	nice -n 15 $(PY) scripts/mutation.py $(MUTATION_GROUPS) --jobs $(MUTATION_JOBS)

bench: $(STAMP)
	$(PY) scripts/bench_core.py --out results/bench_core.json
	$(PY) scripts/bench_wireless.py --out results/bench_wireless.json
	$(PY) scripts/bench_sweep.py
	$(PY) scripts/bench_linklevel.py --out results/bench_linklevel.json

# Ray-traced channels (backend = "sionna-rt", docs/raytracing.md) from a fresh clone: installs sionna-rt and, as root on
# Debian, libllvm19 when missing (Dr.Jit aborts the process with Debian's libLLVM 15); sionna-rt's sionna/__init__.py
# imports rt eagerly, so sionna-no-rt's (lazy) one is put back. `make demo` never needs any of it.
STAMP_RT := $(VENV)/.installed-rt
$(STAMP_RT): $(STAMP)
	@if ! ls /usr/lib/*/libLLVM*.so.19* >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q libllvm19 || (apt-get update -q && apt-get install -y -q libllvm19); \
	  else echo "raytraced: libLLVM 19 is missing and this is not root: run 'sudo apt-get install -y libllvm19'" >&2; exit 2; fi; \
	fi
	$(PY) -m pip install -q -e '.[test,rt]'
	$(PY) -m pip install -q --force-reinstall --no-deps "sionna-no-rt==$$($(PY) -c 'import importlib.metadata as m; print(m.version("sionna-no-rt"))')"
	touch $(STAMP_RT)

# Train the selector on the ray-traced munich-vehicular and evaluate every policy on it (cold: 25 + 8 min measured on
# 2 cores shared by ~20 jobs; every solve is cached in $BEAMATTN_RT_CACHE, default ~/.cache/beamattn/rt: a rerun
# reads its channels in seconds).
RT_SCENARIO ?= scenarios/munich-vehicular.toml
RT_NAME     := $(basename $(notdir $(RT_SCENARIO)))
raytraced: $(STAMP_RT)
	nice -n 10 $(VENV)/bin/beamattn train $(RT_SCENARIO) --out results/train-$(RT_NAME) --force
	nice -n 10 $(VENV)/bin/beamattn run $(RT_SCENARIO) --checkpoint results/train-$(RT_NAME)/selector.safetensors --out results/$(RT_NAME) --force

# Cross-site: the selector trained on munich evaluated on the held-out florence scene (same radio set-up).
raytraced-crosssite: raytraced
	nice -n 10 $(VENV)/bin/beamattn run scenarios/florence-vehicular.toml --checkpoint results/train-$(RT_NAME)/selector.safetensors --out results/florence-vehicular-from-$(RT_NAME) --force

test-raytracing: $(STAMP_RT)
	$(PY) -m pytest -q -m raytracing tests/test_sionna_rt.py

# The documentation site (docs/, mkdocs.yml) into site/, warnings as errors: the command, scenario-file, API and
# tutorial pages are generated from the code at build time (scripts/gen_docs.py).
STAMP_DOCS := $(VENV)/.installed-docs
$(STAMP_DOCS): $(STAMP)
	$(PY) -m pip install -q -e '.[test,docs]'
	touch $(STAMP_DOCS)

docs: $(STAMP_DOCS)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict
	# The built site against the code: every public name in the API reference, the generated references complete.
	BEAMATTN_DOCS_SITE=site $(PY) -m pytest -q tests/test_docs.py

# Every tutorial (tutorials/*.py, jupytext scripts) from start to end on small settings; the Keras one in .venv-tf.
tutorials: $(STAMP) $(STAMP_TF)
	$(PY) -m pytest -q -m slow --durations=0 tests/test_tutorials.py

clean:
	rm -rf $(VENV) $(VENV_TF) results build site *.egg-info
