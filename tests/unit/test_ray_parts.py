"""The Ray executor's pure parts: work shares and configuration (no Ray needed)."""

import importlib.util
import socket

import pytest

from fedforge.config import build_config
from fedforge.engine.ray_executor import _check_reachable, balanced_shares
from fedforge.errors import ConfigError


def test_shares_balance_samples_and_keep_job_order():
    sizes = [100, 10, 10, 10, 90, 5]
    shares = balanced_shares(sizes, [0, 1])
    assert sorted(p for share in shares.values() for p in share) == list(range(6))
    assert all(share == sorted(share) for share in shares.values())
    loads = [sum(sizes[p] for p in share) for share in shares.values()]
    assert max(loads) - min(loads) <= 15
    assert balanced_shares(sizes, [0, 1]) == shares  # deterministic: same round, same partial sums


def test_shares_skip_idle_workers_and_use_only_given_slots():
    assert balanced_shares([5], [0, 1, 2]) == {0: [0]}
    assert set(balanced_shares([1, 1, 1, 1], [2, 5])) == {2, 5}


def test_ray_backend_parameters_are_validated():
    cfg = build_config({"backend": {"kind": "ray", "num_workers": 2, "gpus_per_worker": 0.5}})
    assert cfg.backend.params.num_workers == 2 and cfg.backend.params.address is None
    with pytest.raises(ConfigError, match="backend.num_workers"):
        build_config({"backend": {"kind": "ray", "num_workers": 0}})


def test_a_missing_ray_install_is_a_config_error_with_the_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'fedforge\[ray\]'"):
        build_config({"backend": {"kind": "ray"}})


def test_an_address_nobody_listens_on_fails_fast():
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"backend.address=127.0.0.1:{port}: no Ray head listens there"):
        _check_reachable(f"127.0.0.1:{port}")
    _check_reachable("auto")  # resolved by Ray from the local session
