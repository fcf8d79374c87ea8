"""`fedforge report`: figures and a comparison table across runs, read from the run store."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedforge.errors import RunDirError
from fedforge.tracking.continual import continual_markdown
from fedforge.tracking.plots import distribution_plot, line_plot, partition_heatmap
from fedforge.tracking.query import load_client_rounds, load_events, load_metrics, load_rounds, load_runs


@dataclass
class RunView:
    """What the report needs of one run."""

    name: str
    method: str
    config: dict[str, Any]
    summary: dict[str, Any]
    rounds: list[dict[str, Any]]
    client_accuracy: list[float]
    histogram: np.ndarray | None
    byzantine: list[tuple[int, int]] = field(default_factory=list)  # (round, client) of simulated attackers
    series: dict[str, dict[int, float]] = field(default_factory=dict)  # round-level metrics: name -> round -> value

    label: str = ""  # what legends call this run: set by distinct_labels

    def curve(self) -> tuple[list[float], list[float], list[float]]:
        """(round numbers, cumulative MB exchanged, global accuracy) at evaluated rounds."""
        rounds, mbytes, accuracy, total = [], [], [], 0
        for row in self.rounds:
            total += (row["bytes_down"] or 0) + (row["bytes_up"] or 0)
            if row["global_accuracy"] is not None:
                rounds.append(row["round"])
                mbytes.append(total / 1e6)
                accuracy.append(row["global_accuracy"])
        return rounds, mbytes, accuracy

    def curve_over(self, name: str) -> tuple[list[float], list[float]]:
        """(round metric `name`, global accuracy) at evaluated rounds: virtual seconds so far (a system
        section), epsilon spent so far (a privacy section)."""
        values = self.series.get(name, {})
        points = [
            (values[row["round"]], row["global_accuracy"])
            for row in self.rounds
            if row["global_accuracy"] is not None and row["round"] in values
        ]
        return [t for t, _ in points], [a for _, a in points]

    def rounds_to(self, target: float) -> int | None:
        for row in self.rounds:
            if row["global_accuracy"] is not None and row["global_accuracy"] >= target:
                return row["round"]
        return None

    def params(self) -> str:
        return algorithm_params(self.config)

    def partition(self) -> str:
        return partition_label(self.config)


LABEL_DETAILS = (  # what may tell runs of one method apart, in the order a legend adds them
    lambda v: v.params(),
    lambda v: v.partition(),
    lambda v: f"{v.config['data']['num_clients']} clients",
    lambda v: section_label(v.config.get("aggregation")),
    lambda v: section_label(v.config.get("server_opt")),
    lambda v: f"seed {v.config['seed']}",
    lambda v: v.name,
)


def distinct_labels(views: list[RunView]) -> None:
    """Label each run by its method, adding only the details in which runs of the same method
    differ (`fedprox mu=0.1`, `fedavg seed 2`), so a legend never repeats a name."""
    by_method: dict[str, list[RunView]] = {}
    for v in views:
        by_method.setdefault(v.method, []).append(v)
    for group in by_method.values():
        details = [d for d in LABEL_DETAILS if len(group) > 1 and len({d(v) for v in group}) > 1]
        for v in group:
            shown = []
            for detail in details:
                shown.append(detail(v))
                if len({tuple(d(u) for d in details[: len(shown)]) for u in group}) == len(group):
                    break
            v.label = " ".join([v.method, *(x for x in shown if x != "-")])


def algorithm_params(config: dict[str, Any]) -> str:
    """`mu=0.01` for a resolved config's algorithm ('-' when it takes none)."""
    algo = {k: v for k, v in config["algorithm"].items() if k != "name"}
    return ", ".join(f"{k}={v}" for k, v in algo.items()) or "-"


def partition_label(config: dict[str, Any]) -> str:
    """`dirichlet(alpha=0.5, min_samples=10)` for a resolved config's partition."""
    part = dict(config["data"]["partition"])
    kind = part.pop("kind")
    return f"{kind}({', '.join(f'{k}={v}' for k, v in part.items())})"


def load_view(run_dir: str | Path) -> RunView:
    run_dir = Path(run_dir)
    runs = load_runs(run_dir)
    if not runs:
        raise RunDirError(f"run '{run_dir}' is not in its runs.db; was it started with tracking.database=false?")
    run = runs[0]
    clients = load_client_rounds(run_dir)
    evaluated = [r for r in clients if r["test_accuracy"] is not None]
    last = max((r["round"] for r in evaluated), default=None)
    partition = run_dir / "partition.json"
    histogram = None
    if partition.is_file():
        histogram = np.asarray(json.loads(partition.read_text()).get("label_histogram") or [[0]])
    return RunView(
        name=run["name"],
        method=run["algorithm"],
        config=run["config"],
        summary=run["summary"],
        rounds=load_rounds(run_dir),
        client_accuracy=[r["test_accuracy"] for r in evaluated if r["round"] == last],
        histogram=histogram,
        byzantine=[(e["round"], e["client_id"]) for e in load_events(run_dir) if e["kind"] == "byzantine"],
        series=round_series(load_metrics(run_dir), ("virtual_time", "epsilon")),
    )


def round_series(metrics: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, dict[int, float]]:
    """The server-level metrics called `names`, by name and round."""
    series: dict[str, dict[int, float]] = {}
    for m in metrics:
        if m["client_id"] is None and m["name"] in names:
            series.setdefault(m["name"], {})[m["round"]] = m["value"]
    return series


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def headline_of(views: list[RunView]) -> tuple[str, str]:
    """(short, long) name of the number the runs are judged by: accuracy, or the headline all of
    them share when their task has another (mAP@0.5 for detection, mIoU for segmentation)."""
    from fedforge.tasks import TASKS

    labels = set()
    for v in views:
        name = (v.config.get("task") or {}).get("name", "classification")
        task = TASKS.get(name) if name in TASKS else None
        labels.add(task.headline.describe() if task is not None and task.evaluation == "dense" else "accuracy")
    label = labels.pop() if len(labels) == 1 else "accuracy"
    return ("acc", "accuracy") if label == "accuracy" else (label, label)


def markdown_table(views: list[RunView], target: float) -> str:
    """One row per run. `client acc` is the mean over clients of their local-test accuracy
    (personalized: each client's own model where the method keeps local parts, as FedBN does),
    `worst 10%` the mean of the lowest tenth: where non-IID methods differ most. Dense tasks
    show their headline (mAP@0.5, mIoU) in the same columns."""
    short, _ = headline_of(views)
    head = (
        f"| run | method | params | partition | clients | final {short} | best {short} | client {short} | worst 10% "
        f"| rounds to {target:.2f} | rounds | epsilon | wall s |"
    )
    lines = [head, "|" + "---|" * 13]
    for v in views:
        reach = v.rounds_to(target)
        s = v.summary
        lines.append(
            f"| {v.name} | {v.method} | {v.params()} | {v.partition()} | {v.config['data']['num_clients']} "
            f"| {_fmt(s.get('final_accuracy'))} | {_fmt(s.get('best_accuracy'))} "
            f"| {_fmt(s.get('final_personalized_accuracy'))} | {_fmt(s.get('final_worst10_accuracy'))} "
            f"| {reach if reach is not None else 'not reached'} | {s.get('rounds', len(v.rounds))} "
            f"| {_epsilon(s)} | {_fmt(s.get('wall_seconds'), 1)} |"
        )
    return "\n".join(lines) + "\n"


def _epsilon(summary: dict[str, Any]) -> str:
    """The run's epsilon at its delta; 'inf' for DP without noise, '-' without a privacy section."""
    privacy = summary.get("privacy")
    if not privacy:
        return "-"
    if privacy.get("epsilon") is None:
        return "inf"
    return f"{privacy['epsilon']:.2f} (delta {privacy['delta']:g})"


def partition_groups(views: list[RunView]) -> list[list[RunView]]:
    """Runs grouped by identical client x class histograms: one heat map per distinct partition."""
    groups: dict[tuple[tuple[int, ...], bytes], list[RunView]] = {}
    for v in views:
        if v.histogram is not None and v.histogram.size > 1:
            groups.setdefault((v.histogram.shape, v.histogram.tobytes()), []).append(v)
    return list(groups.values())


def section_label(section: dict[str, Any] | None, key: str = "name") -> str:
    """`krum(f=2)` for a resolved plug-in section; '-' when absent."""
    if not section:
        return "-"
    rest = ", ".join(f"{k}={v}" for k, v in section.items() if k != key and v is not None)
    return f"{section[key]}({rest})" if rest else str(section[key])


def robustness_markdown(views: list[RunView]) -> str:
    """Aggregator, server optimizer and simulated attack of each run, with its attackers and
    rejections; empty when every run used plain mean, no server optimizer and no attack."""
    interesting = [
        v
        for v in views
        if v.config.get("attack")
        or v.config.get("aggregation", {}).get("name", "mean") != "mean"
        or v.config.get("server_opt", {}).get("name", "none") != "none"
    ]
    if not interesting:
        return ""
    lines = [
        "## Aggregation and attacks\n",
        "| run | aggregation | server optimizer | attack | Byzantine client-rounds | rejected updates | final acc |",
        "|" + "---|" * 7,
    ]
    for v in interesting:
        attackers = len(v.byzantine)
        lines.append(
            f"| {v.name} | {section_label(v.config.get('aggregation'))} | {section_label(v.config.get('server_opt'))} "
            f"| {section_label(v.config.get('attack'), 'kind')} | {attackers} | {v.summary.get('rejected_updates', 0)} "
            f"| {_fmt(v.summary.get('final_accuracy'))} |"
        )
    return "\n".join(lines) + "\n"


@dataclass
class Report:
    folder: Path
    files: list[Path] = field(default_factory=list)


def write_report(run_dirs: list[str | Path], out: str | Path, target: float = 0.9) -> Report:
    """Curves, client-accuracy distribution, partition heat maps and report.md in `out`."""
    views = [load_view(d) for d in run_dirs]
    distinct_labels(views)
    report = Report(Path(out))
    report.folder.mkdir(parents=True, exist_ok=True)

    def path(name: str) -> Path:
        report.files.append(report.folder / name)
        return report.folder / name

    _, metric = headline_of(views)
    curves = [(v.label, v.method, *v.curve()) for v in views]
    line_plot(
        [(label, m, rounds, acc) for label, m, rounds, _, acc in curves],
        path("accuracy_vs_round.png"),
        f"Global test {metric} per round",
        "round",
        f"global test {metric}",
        integer_x=True,
    )
    line_plot(
        [(label, m, mb, acc) for label, m, _, mb, acc in curves],
        path("accuracy_vs_bytes.png"),
        f"Global test {metric} vs communication",
        "cumulative MB exchanged (down + up)",
        f"global test {metric}",
    )
    over = [
        (
            "virtual_time",
            "accuracy_vs_virtual_time.png",
            "vs virtual time (simulated client speeds)",
            "virtual seconds",
        ),
        ("epsilon", "accuracy_vs_epsilon.png", "vs privacy spent", "epsilon spent (RDP accountant)"),
    ]
    for name, file, title, axis in over:
        drawn = [(v.label, v.method, *v.curve_over(name)) for v in views if name in v.series]
        if drawn:
            line_plot(drawn, path(file), f"Global test {metric} {title}", axis, f"global test {metric}")
    groups = [(v.label, v.method, v.client_accuracy) for v in views if v.client_accuracy]
    if groups:
        distribution_plot(
            groups,
            path("client_accuracy.png"),
            f"Final per-client {metric} (local test splits)",
            f"client test {metric}",
        )
    partitions = []
    for i, group in enumerate(partition_groups(views), start=1):
        first = group[0]
        title = f"{first.config['data']['name']}, {first.config['data']['num_clients']} clients: {first.partition()}"
        partition_heatmap(first.histogram, path(f"partition_{i}.png"), title)
        partitions.append(f"- `partition_{i}.png`: {', '.join(v.name for v in group)}")
    table = markdown_table(views, target)
    figures = "\n".join(f"![{p.stem}]({p.name})" for p in report.files)
    if partitions:
        figures += "\n\nPartition maps (runs with identical client x class counts share one):\n" + "\n".join(partitions)
    continual = continual_markdown([(v.name, v.summary) for v in views])
    robustness = robustness_markdown(views)
    path("report.md").write_text(f"# fedforge report\n\n{table}\n{robustness}\n{continual}\n{figures}\n")
    return report
