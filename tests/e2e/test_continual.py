"""Class-continual runs end to end: TARGET against Finetune on a digits task stream, what is
stored and shown, that no client ever holds an earlier task's samples, and crash + resume."""

import pytest
import torch

import fedforge
from fedforge.algorithms import ClientContext, ClientJob
from fedforge.algorithms.target import Target
from fedforge.tracking.query import load_metrics, load_rounds
from fedforge.tracking.report import write_report

pytestmark = pytest.mark.slow

CONFIG = "configs/digits_continual_target.yaml"
SMALL = {
    "continual.tasks": 3,
    "continual.rounds_per_task": 6,
    "algorithm.synthesis_rounds": 8,
    "algorithm.warmup": 2,
    "algorithm.generator_steps": 30,
    "algorithm.student_steps": 20,
    "backend.device": "cpu",
}


class SpyTarget(Target):
    """TARGET that records, for every local update, what the client holds and receives."""

    seen: list[dict] = []

    def local_update(self, ctx: ClientContext, job: ClientJob):
        src = ctx.data.source
        shard = ctx.data.client_train[ctx.client_id]
        synthetic = job.payload.get("synthetic")
        SpyTarget.seen.append(
            {
                "round": job.round,
                "labels": set(src.train_y[shard].tolist()),
                "state": dict(ctx.state),
                "entries": set(job.payload),
                "synthetic": None if synthetic is None else synthetic.clone(),
            }
        )
        return super().local_update(ctx, job)


def test_target_remembers_old_classes_that_finetune_forgets_without_keeping_old_data(runs_dir):
    common = {**SMALL, "tracking.runs_dir": str(runs_dir)}
    SpyTarget.seen = []
    target = fedforge.run(CONFIG, quiet=True, algorithm=SpyTarget, **common)
    finetune = fedforge.run(CONFIG, quiet=True, **{**common, "algorithm": {"name": "finetune"}})
    t, f = target.summary["continual"], finetune.summary["continual"]

    # learned: old classes survive under TARGET, not under Finetune
    assert f["final_old_accuracy"] < 0.05 and f["forgetting"] > 0.9
    assert t["final_old_accuracy"] > f["final_old_accuracy"] + 0.3
    assert t["average_accuracy"] > f["average_accuracy"] and t["forgetting"] < f["forgetting"] - 0.3
    assert [len(row) for row in t["accuracy_matrix"]] == [1, 2, 3]
    synthesis = target.summary["synthesis"]
    assert [s["task"] for s in synthesis] == [0, 1] and all(s["synthetic_images"] == 8 * 128 for s in synthesis)
    assert all(s["seconds"] > 0 and s["teacher_agreement"] > 0.5 for s in synthesis)

    # no client ever holds a sample of an earlier task, keeps data in its state, or gets real images
    plan = target.config.continual
    classes = fedforge.api.Experiment(target.config).data.stream.plan.classes
    real = {bytes(img.numpy()) for img in fedforge.api.Experiment(target.config).data.source.train_x}
    assert len(SpyTarget.seen) == 3 * plan.rounds_per_task * 10
    for record in SpyTarget.seen:
        task = record["round"] // plan.rounds_per_task
        assert record["labels"] <= set(classes[task])
        assert record["state"] == {}
        assert record["entries"] == ({"model"} if task == 0 else {"model", "teacher", "synthetic"})
        if record["synthetic"] is not None:
            assert record["synthetic"].dtype == torch.uint8
            assert not any(bytes(img.numpy()) in real for img in record["synthetic"])

    # stored per round and shown in the report
    last = len(load_rounds(target.run_dir))  # the last round's (1-based) number
    stored = {m["name"]: m["value"] for m in load_metrics(target.run_dir) if m["round"] == last}
    assert stored["task_0_accuracy"] == pytest.approx(t["accuracy_matrix"][-1][0])
    report = write_report([target.run_dir, finetune.run_dir], runs_dir / "report")
    text = (runs_dir / "report" / "report.md").read_text()
    assert "Class-continual scores" in text and "synthesis after task" in text
    assert report.files


class CrashOnce(Target):
    crashed = False

    def apply_mean(self, state, mean, round_index):
        if round_index == 8 and not CrashOnce.crashed:
            CrashOnce.crashed = True
            raise RuntimeError("simulated server crash in task 1")
        return super().apply_mean(state, mean, round_index)


def test_a_crashed_target_run_resumes_to_the_same_result(runs_dir):
    common = {**SMALL, "continual.tasks": 2, "tracking.runs_dir": str(runs_dir)}
    reference = fedforge.run(CONFIG, quiet=True, **common)
    with pytest.raises(RuntimeError, match="simulated server crash"):
        fedforge.run(CONFIG, quiet=True, algorithm=CrashOnce, **{**common, "tracking.name": "crashed"})
    resumed = fedforge.resume(runs_dir / "crashed", quiet=True)
    assert resumed.summary["continual"] == reference.summary["continual"]
    assert resumed.summary["synthesis"][0]["synthetic_images"] == reference.summary["synthesis"][0]["synthetic_images"]
    for a, b in zip(resumed.model.state_dict().values(), reference.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
