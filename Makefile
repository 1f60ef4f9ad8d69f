# Two commands on a fresh machine:  `make demo` (the whole job on local defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo
# the demo's teacher: empty = the MicroAST authors' weights standing in (no SD 1.5 weights here),
# styleid = StyleID on the tiny random-weight SD 1.5
TEACHER ?=
# The cluster's image: Ray's GPU image plus the pinned dependencies (Dockerfile). Its tag is a
# hash of what goes into it, so a new tag means new dependencies; cluster.yaml names this tag.
IMAGE_REPO ?= ghcr.io/OWNER/styleid-distill
IMAGE_TAG := deps-$(shell cat Dockerfile constraints.txt | sha256sum | cut -c1-12)
IMAGE := $(IMAGE_REPO):$(IMAGE_TAG)

.PHONY: install demo serve test lint lock image push print-image

install: $(VENV)/.installed

# Every package at the version constraints.txt pins (the versions the Docker image carries too).
# torch/torchvision go first (these machines serve them from local disk); the project and its
# dev tools follow. The stamp re-runs the install when pyproject.toml or the pins change.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch torchvision
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

# Re-pin constraints.txt from the installed venv after changing pyproject.toml's dependencies.
lock:
	$(BIN)/python tools/lock.py

demo: install
	$(BIN)/python -m jobs.pipeline --out $(DEMO_OUT) $(if $(TEACHER),--teacher $(TEACHER))

# A student on a web page at http://127.0.0.1:8000/ (Ctrl-C stops it): the MicroAST authors'
# shipped weights, or STUDENT=a training run folder or checkpoint (any fsspec URL).
STUDENT ?= microast-authors
serve: install
	$(BIN)/python -m jobs.serve --student $(STUDENT)

lint: install
	$(BIN)/ruff check .

# Two test processes (pytest-xdist), each test file whole in one of them: a file's module-level
# runs are built once, and Ray start-ups in one overlap the other's computing. Files go out in
# the order tests/conftest.py gives them (slowest first), not re-sorted by their test counts.
test: lint
	$(BIN)/pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# Build and push the cluster image (needs Docker), then set cluster.yaml's docker.image to it.
image:
	docker build -t $(IMAGE) .

push: image
	docker push $(IMAGE)

print-image:
	@echo $(IMAGE)
