# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision are installed first, at the versions this machine's pip serves from disk;
# pyproject.toml only declares ranges (torch>=2.3).
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint docs bench proto clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/fedforge run configs/digits_fedavg.yaml

test: $(VENV)/.installed
	$(BIN)/pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks examples docs

# The API reference from the docstrings (pdoc); any warning (a broken docstring, a module that
# fails to import) is an error, and CI runs this target.
docs: $(VENV)/.installed
	rm -rf build/api
	$(BIN)/python -W error -m pdoc -o build/api $$($(BIN)/python docs/api_modules.py)
	@echo "API reference: build/api/index.html"

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/overhead.py

# Regenerate the gRPC modules after editing src/fedforge/deploy/fedforge.proto. grpcio-tools 1.74
# emits protobuf 6.31 gencode, readable by every protobuf runtime >= 6.31.1 (pyproject's floor).
proto:
	$(PYTHON) -m venv .bench/protoc
	.bench/protoc/bin/pip install -q grpcio-tools==1.74.0
	.bench/protoc/bin/python -m grpc_tools.protoc -I src --python_out=src --grpc_python_out=src \
		src/fedforge/deploy/fedforge.proto

clean:
	rm -rf $(VENV) runs build .pytest_cache
