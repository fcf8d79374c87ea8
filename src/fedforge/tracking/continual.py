"""Class-continual scores from the accuracy matrix (standard definitions, e.g. Chaudhry et al., 2018).

`matrix[t][j]` is the accuracy on task j's classes after training task t (j <= t), and
`seen[t]` the accuracy on all classes seen up to task t.
"""

from __future__ import annotations

from typing import Any


def average_accuracy(seen: list[float]) -> float | None:
    """Average incremental accuracy: the mean over tasks of the accuracy on the classes seen so far."""
    return sum(seen) / len(seen) if seen else None


def forgetting(matrix: list[list[float]]) -> float | None:
    """Mean over the earlier tasks j of (best accuracy on j before the last task) - (accuracy on j at the end)."""
    if len(matrix) < 2:
        return None
    last = matrix[-1]
    drops = [max(row[j] for row in matrix[j:-1]) - last[j] for j in range(len(matrix) - 1)]
    return sum(drops) / len(drops)


def continual_summary(matrix: list[list[float]], seen: list[float], old: float | None) -> dict[str, Any]:
    return {
        "accuracy_matrix": matrix,
        "seen_accuracy": seen,
        "average_accuracy": average_accuracy(seen),
        "final_accuracy": seen[-1] if seen else None,
        "final_old_accuracy": old,
        "forgetting": forgetting(matrix),
    }


def _cell(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def continual_markdown(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """The report's class-continual section: scores per run, then each run's accuracy matrix
    (row t: accuracy on each task's classes after training task t) and synthesis cost."""
    scored = [(name, summary) for name, summary in runs if summary.get("continual")]
    if not scored:
        return ""
    lines = [
        "## Class-continual scores\n",
        "| run | average accuracy | final accuracy | old-class accuracy | forgetting ↓ |",
        "|---|---|---|---|---|",
    ]
    for name, summary in scored:
        c = summary["continual"]
        lines.append(
            f"| {name} | {_cell(c['average_accuracy'])} | {_cell(c['final_accuracy'])} "
            f"| {_cell(c['final_old_accuracy'])} | {_cell(c['forgetting'])} |"
        )
    for name, summary in scored:
        matrix = summary["continual"]["accuracy_matrix"]
        width = len(matrix[-1]) if matrix else 0
        lines += [f"\n### {name}: accuracy per task after each task\n"]
        lines += ["| after task | " + " | ".join(f"task {j}" for j in range(width)) + " | seen classes |"]
        lines += ["|---|" + "---|" * (width + 1)]
        for t, row in enumerate(matrix):
            cells = [_cell(row[j]) if j < len(row) else "" for j in range(width)]
            lines.append(f"| {t} | " + " | ".join(cells) + f" | {_cell(summary['continual']['seen_accuracy'][t])} |")
        if summary.get("synthesis"):
            lines += [
                "\n| synthesis after task | seconds | synthetic images | teacher agreement |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {s['task']} | {s['seconds']:.1f} | {s['synthetic_images']} | {s['teacher_agreement']:.3f} |"
                for s in summary["synthesis"]
            ]
    return "\n".join(lines) + "\n"
