"""On-disk datasets flow through the whole federation (tiny files in the real formats)."""

import numpy as np
import pytest

import fedforge
from tests.unit.test_sources import write_cifar


def fake_cifar10(root):
    """Tiny CIFAR-10 python pickles (16 images per file) under `root`."""
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    write_cifar(root / "cifar-10-batches-py", files, "labels", n=16)
    return root


def test_cifar_config_runs_resnet18_with_augmentation(tmp_path, runs_dir):
    fake_cifar10(tmp_path)
    result = fedforge.run(
        "configs/cifar10_fedavg.yaml",
        quiet=True,
        data={"root": str(tmp_path), "num_clients": 4, "partition": {"kind": "iid"}},
        train={"rounds": 2, "clients_per_round": 2, "local_epochs": 1, "batch_size": 8},
        eval={"every": 1},
        tracking={"runs_dir": str(runs_dir)},
        backend={"device": "cpu"},
    )
    assert result.summary["rounds"] == 2
    assert 0.0 <= result.final_accuracy <= 1.0 and np.isfinite(result.summary["final_loss"])
    assert result.config.data.augment


@pytest.mark.slow
def test_cifar_fedssl_config_runs_fedema_with_probe_and_finetuning(tmp_path, runs_dir):
    fake_cifar10(tmp_path)
    result = fedforge.run(
        "configs/cifar10_fedssl.yaml",
        quiet=True,
        data={"root": str(tmp_path)},
        task={"hidden_dim": 64, "projection_dim": 32, "probe_epochs": 2, "finetune_epochs": 1},
        train={"rounds": 2, "local_epochs": 1, "batch_size": 8},
        eval={"every": 1},
        tracking={"runs_dir": str(runs_dir)},
        backend={"device": "cpu"},
    )
    assert result.config.algorithm.name == "fedema" and result.config.task.params.loss == "byol"
    metrics = result.summary["final_metrics"]
    assert set(metrics) == {"knn_accuracy", "finetune_0.01_accuracy", "finetune_0.1_accuracy"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
