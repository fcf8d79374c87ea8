"""The virtual clock: speed profiles, deadlines, stragglers, and the caps a job puts on local work."""

import numpy as np
import pytest

import fedforge
from fedforge.algorithms.fedavg import FedAvg
from fedforge.config import Config, SystemConfig
from fedforge.engine.system import SystemModel, draw_slowness
from fedforge.errors import ConfigError
from fedforge.tracking.query import load_events, load_metrics
from tests.quadratic import Quadratic, sgd


def model(sizes, **system) -> SystemModel:
    return SystemModel(SystemConfig.model_validate(system), sizes, batch_size=10, local_epochs=2, seed=0)


def test_a_round_waits_for_its_slowest_client_and_a_deadline_caps_or_drops():
    sizes = [20, 50, 100]  # 4, 10, 20 steps at 2 epochs of batch 10
    fixed = {"profile": {"kind": "uniform", "low": 2.0, "high": 2.0}, "step_seconds": 0.5}  # 1 s a step
    plans = [model(sizes, **fixed).plan(c) for c in range(3)]
    assert [p.seconds for p in plans] == [4.0, 10.0, 20.0] and not any(p.dropped for p in plans)
    assert model(sizes, **fixed).round_seconds(plans) == 20.0

    partial = [model(sizes, **fixed, deadline=12.0).plan(c) for c in range(3)]
    assert [p.max_steps for p in partial] == [None, None, 12] and partial[2].seconds == 12.0
    assert partial[2].work_fraction == pytest.approx(12 / 20)

    drop = model(sizes, **fixed, deadline=12.0, on_deadline="drop")
    assert [drop.plan(c).dropped for c in range(3)] == [False, False, True]
    assert drop.round_seconds([drop.plan(c) for c in range(3)]) == 12.0  # the server waited for the deadline


def test_stragglers_are_a_fixed_seeded_share_that_trains_fewer_epochs():
    system = model([30] * 10, straggler_ratio=0.3, straggler_epochs=1)
    assert len(system.stragglers) == 3 and system.stragglers == model([30] * 10, straggler_ratio=0.3).stragglers
    for c in range(10):
        assert system.plan(c).epochs == (1 if c in system.stragglers else 2)


def test_speed_profiles_are_seeded_and_real_devices_are_relative_to_the_median():
    cfg = SystemConfig.model_validate({"profile": {"kind": "lognormal", "sigma": 1.0}})
    a = draw_slowness(cfg, 1000, np.random.default_rng(1))
    assert np.array_equal(a, draw_slowness(cfg, 1000, np.random.default_rng(1)))
    assert abs(np.median(np.log(a))) < 0.15 and 0.85 < np.std(np.log(a)) < 1.15
    real = draw_slowness(SystemConfig.model_validate({"profile": {"kind": "real"}}), 5000, np.random.default_rng(0))
    assert np.median(real) == 1.0 and real.max() / real.min() >= 100  # phones differ by two orders of magnitude
    with pytest.raises(ValueError, match="high"):
        SystemConfig.model_validate({"profile": {"kind": "uniform", "low": 3, "high": 1}})


def test_a_job_caps_local_steps_and_epochs_whatever_the_method_asks():
    problem = Quadratic(a=[1.0], b=[[1.0]], n=[40])  # 4 batches of 10 per epoch, 2 epochs: 8 steps
    lr = 0.1

    def after(**caps):
        def edit(job):
            job.max_epochs, job.max_steps = caps.get("epochs"), caps.get("steps")

        x, _ = problem.run(FedAvg(train=sgd(lr, 2, 10)), rounds=1, edit_job=edit)
        return float(x[0])

    steps_to_value = lambda k: 1 - (1 - lr) ** k  # noqa: E731  x after k gradient steps from 0 toward 1
    assert after() == pytest.approx(steps_to_value(8), abs=1e-6)
    assert after(steps=3) == pytest.approx(steps_to_value(3), abs=1e-6)
    assert after(epochs=1) == pytest.approx(steps_to_value(4), abs=1e-6)


def test_deadline_drops_are_events_and_the_clock_is_stored(tmp_path):
    system = {"profile": {"kind": "lognormal", "sigma": 1.5}, "deadline": 0.3, "on_deadline": "drop"}
    result = fedforge.run(
        quiet=True,
        **{"train.rounds": 3, "data.num_clients": 8, "tracking.runs_dir": str(tmp_path), "tracking.name": "r"},
        system=system,
    )
    events = [e for e in load_events(result.run_dir) if e["kind"] == "deadline"]
    assert events and all("deadline is 0.3 s" in e["reason"] for e in events)
    clock = [m for m in load_metrics(result.run_dir) if m["client_id"] is None and m["name"] == "virtual_time"]
    assert [m["round"] for m in clock] == [1, 2, 3]
    assert all(b["value"] > a["value"] for a, b in zip(clock, clock[1:], strict=False))


def test_configs_that_cannot_hold_refuse_to_start(tmp_path):
    with pytest.raises(ValueError, match="real machines"):
        Config.model_validate({"system": {}, "backend": {"kind": "remote"}})
    runs = {"tracking.runs_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="algorithm.concurrency"):
        fedforge.run(quiet=True, algorithm={"name": "fedbuff", "concurrency": 50}, **runs)
    with pytest.raises(ConfigError, match="system.deadline"):
        fedforge.run(quiet=True, algorithm={"name": "fedbuff"}, system={"deadline": 5}, **runs)
    with pytest.raises(ConfigError, match="aggregation.name"):
        fedforge.run(quiet=True, algorithm={"name": "fedbuff"}, aggregation={"name": "median"}, **runs)
    assert not any(tmp_path.iterdir())  # refused before a run directory or a store row was made


def test_the_report_plots_accuracy_against_virtual_time_only_for_clocked_runs(tmp_path):
    from fedforge.tracking.report import write_report

    common = {"train.rounds": 2, "data.num_clients": 4, "tracking.runs_dir": str(tmp_path)}
    clocked = fedforge.run(quiet=True, system={"profile": {"kind": "real"}}, **common, **{"tracking.name": "c"})
    plain = fedforge.run(quiet=True, **common, **{"tracking.name": "p"})
    assert clocked.summary["virtual_time"] > 0 and "virtual_time" not in plain.summary
    report = write_report([clocked.run_dir, plain.run_dir], tmp_path / "report")
    assert (tmp_path / "report" / "accuracy_vs_virtual_time.png") in report.files
    only_plain = write_report([plain.run_dir], tmp_path / "report2")
    assert not any(p.name == "accuracy_vs_virtual_time.png" for p in only_plain.files)
