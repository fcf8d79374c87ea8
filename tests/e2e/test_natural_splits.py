"""COALA's FEMNIST setting on a generated LEAF fixture: one client per writer, and it learns."""

import json

import pytest

import fedforge
from fedforge.config import load_config
from fedforge.data.federated import build_federated_dataset
from tests.leaf_fixture import write_leaf

CONFIG = "configs/femnist_leaf_fedavg.yaml"


@pytest.mark.slow
def test_the_femnist_config_federates_writers_and_learns(tmp_path):
    write_leaf(tmp_path / "data", writers=12)
    overrides = {
        "data.root": str(tmp_path / "data"),
        "data.num_clients": 10,
        "data.partition.data_amount": 1.0,
        "train.local_epochs": 2,
        "tracking.runs_dir": str(tmp_path / "runs"),
    }
    data = build_federated_dataset(load_config(CONFIG, overrides))
    writers = data.source.train_writer
    for train, test in zip(data.client_train, data.client_test, strict=True):
        assert len(set(writers[train].tolist()) | set(writers[test].tolist())) == 1  # a client is one writer
    result = fedforge.run(CONFIG, quiet=True, **overrides)
    assert result.final_accuracy >= 0.4  # 10 rounds of 5 writers; chance is 0.1 on the 10 digits used
    partition = json.loads((result.run_dir / "partition.json").read_text())
    assert partition["kind"] == "leaf" and len(partition["clients"]) == 10
    assert all(len(w) == 1 for w in partition["client_writers"])
