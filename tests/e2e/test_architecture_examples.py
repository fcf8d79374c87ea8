"""The worked examples of docs/architecture.md run as written: a method with an extra entry and an aggregator."""

import re
from pathlib import Path

import pytest
import torch

import fedforge
from fedforge.aggregation.reducers import AGGREGATORS, Aggregator
from fedforge.algorithms import ALGORITHMS, ServerState, register
from fedforge.algorithms.fedavg import FedAvg
from fedforge.records import UploadSpec

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def examples() -> dict[str, str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    return {re.search(r'register\("(\w+)"\)', block).group(1): block for block in blocks}


@pytest.fixture(scope="module")
def namespace():
    scope = {"FedAvg": FedAvg, "ServerState": ServerState, "UploadSpec": UploadSpec, "register": register,
             "Aggregator": Aggregator, "AGGREGATORS": AGGREGATORS, "torch": torch}  # fmt: skip
    for source in examples().values():
        exec(compile(source, str(DOC), "exec"), scope)  # the documentation's own code
    yield scope
    ALGORITHMS.remove("fedavg_with_counts")  # later tests see the built-in registries only
    AGGREGATORS.remove("mean_of_norm_clipped")


@pytest.mark.slow
def test_a_method_with_an_extra_entry_gets_its_sample_weighted_mean(namespace, quick):
    result = fedforge.run(quiet=True, **quick, algorithm={"name": "fedavg_with_counts"})
    run = fedforge.tracking.load_runs(result.run_dir)[0]
    assert run["status"] == "finished" and result.final_accuracy > 0.5
    assert result.summary["bytes_up"] > fedforge.run(quiet=True, **quick).summary["bytes_up"]  # the histograms


@pytest.mark.slow
def test_the_documented_aggregator_works_with_any_method(namespace, quick):
    result = fedforge.run(
        quiet=True, **quick, algorithm={"name": "fedprox"}, aggregation={"name": "mean_of_norm_clipped"}
    )
    assert result.config.aggregation.name == "mean_of_norm_clipped" and result.final_accuracy > 0.5


METHODS = DOC.parent / "methods.md"


@pytest.mark.slow
def test_the_documented_method_runs_with_a_robust_aggregator_and_a_server_optimizer(quick):
    section = METHODS.read_text().split("## Your own algorithm", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    definition, call = block.split("\nfedforge.run(", 1)
    exec(compile(definition, str(METHODS), "exec"), {})
    settings = eval("dict(" + call.rstrip().removesuffix(")") + ")")  # the page's own arguments
    assert settings["aggregation"] == {"name": "median"}
    try:
        result = fedforge.run(quiet=True, **quick, **settings)
    finally:
        ALGORITHMS.remove("fedavg_clip")
    assert result.config.algorithm.name == "fedavg_clip" and result.final_accuracy > 0.5
