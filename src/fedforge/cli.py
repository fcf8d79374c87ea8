"""Command line: `fedforge run | resume | serve | join | runs | report | config | list | partition`.

Every input error (FedforgeError) becomes one paragraph on stderr and exit code 2, never a
traceback. Ctrl-C stops a run at once, marks it `interrupted` and prints the command that
resumes it (exit 130); a second Ctrl-C exits without any clean-up. Importing this module
loads no torch, so `fedforge --help` answers at once.
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from fedforge import __version__
from fedforge.errors import FedforgeError, RunInterrupted
from fedforge.logs import LEVELS

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    help="fedforge: federated learning for computer vision. Start with `fedforge run`.",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

ARGS_HELP = (
    "An optional YAML config, then overrides as key.sub=value "
    "(e.g. configs/digits_fedprox.yaml train.rounds=5 algorithm.mu=0.1)."
)


IMPORTS_HELP = "A module or .py file registering your plug-ins (models, data, methods); repeatable."
Imports = Annotated[list[str] | None, typer.Option("--import", help=IMPORTS_HELP, show_default=False)]
INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fedforge {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help=f"Console log level: {' | '.join(LEVELS)}.", case_sensitive=False)
    ] = "warning",
) -> None:
    """fedforge: federated learning for computer vision. Start with `fedforge run`."""
    from fedforge.logs import configure

    if log_level.lower() not in LEVELS:
        raise typer.BadParameter(f"{log_level}: use one of {', '.join(LEVELS)}", param_hint="--log-level")
    configure(log_level.lower())


def user_errors(fn: F) -> F:
    """Print input errors as one paragraph and exit 2; a Ctrl-C as where the run stopped, exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = signal.signal(signal.SIGINT, _first_interrupt)
        try:
            return fn(*args, **kwargs)
        except FedforgeError as exc:
            err.print("[bold red]error:[/] ", end="", highlight=False)
            err.print(_printable(str(exc)), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except RunInterrupted as stop:
            err.print(stop.message(), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(INTERRUPTED) from None
        except KeyboardInterrupt:
            err.print("interrupted", highlight=False)
            raise typer.Exit(INTERRUPTED) from None
        finally:
            signal.signal(signal.SIGINT, previous)

    return wrapper  # type: ignore[return-value]


def _first_interrupt(signum: int, frame: Any) -> None:
    """Stop the run (KeyboardInterrupt unwinds it, storing `interrupted`); arm the hard exit."""
    signal.signal(signal.SIGINT, _second_interrupt)
    raise KeyboardInterrupt


def _second_interrupt(signum: int, frame: Any) -> None:
    """A second Ctrl-C while the first is being handled: exit now, skipping any clean-up."""
    os.write(2, b"\nsecond interrupt: exiting at once\n")
    os._exit(INTERRUPTED)


def _imports(modules: list[str] | None) -> list[str]:
    """Import `--import` modules now; the overrides that record them in the run's config."""
    if not modules:
        return []
    from fedforge.plugins import import_plugins

    saved = import_plugins(modules)
    return ["imports=[" + ", ".join(_yaml_quote(m) for m in saved) + "]"]


def _yaml_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _printable(text: str) -> str:
    """Control characters a user (or a peer) put into a name are shown escaped, never executed
    by the terminal (an escape sequence in an error must not recolour or rewrite the screen)."""
    return "".join(
        ch if ch in "\n\t" or not unicodedata.category(ch).startswith("C") else ascii(ch)[1:-1] for ch in text
    )


def split_args(args: list[str] | None) -> tuple[str | None, list[str]]:
    """`[config.yaml] [k=v ...]` -> (config path or None, overrides)."""
    args = list(args or [])
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def _config(args: list[str] | None, imports: list[str] | None = None):
    from fedforge.config import load_config

    path, overrides = split_args(args)
    return load_config(path, overrides + _imports(imports))


def _print_result(result) -> None:
    s = result.summary
    out.print(f"run directory: {result.run_dir}")
    what = result.config.task.resolve().headline.describe()
    out.print(
        f"final {what}: {_num(s['final_metric'])} (best {_num(s['best_metric'])}) after {s['rounds']} rounds, "
        f"{s['wall_seconds']:.1f} s" + (f" ({s['virtual_time']:.1f} virtual s)" if "virtual_time" in s else "")
    )
    if s.get("privacy"):
        p = s["privacy"]
        spent = "inf (no noise)" if p["epsilon"] is None else f"{p['epsilon']:.3f}"
        z = p["noise_multiplier"]
        out.print(f"privacy ({p['mechanism']} DP): epsilon {spent} at delta {p['delta']:g}, z = {z:g}")
    if s.get("final_metrics"):
        out.print("further metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in s["final_metrics"].items()))
    if s["final_personalized_accuracy"] is not None:
        out.print(
            f"per-client {what}: mean {s['final_personalized_accuracy']:.4f}, "
            f"worst 10% {s['final_worst10_accuracy']:.4f}"
        )
    if s.get("final_domain_accuracy"):
        per_domain = ", ".join(f"{k} {v:.4f}" for k, v in s["final_domain_accuracy"].items())
        out.print(f"per-domain {what}: mean {s['final_domain_mean_accuracy']:.4f} ({per_domain})")
    if s.get("continual"):
        c = s["continual"]
        out.print(
            f"class-continual: average accuracy {_num(c['average_accuracy'])}, old-class accuracy "
            f"{_num(c['final_old_accuracy'])}, forgetting {_num(c['forgetting'])} over {len(c['seen_accuracy'])} tasks"
        )
    for step in s.get("synthesis", []):
        out.print(
            f"synthesis after task {step['task']}: {step['seconds']:.1f} s, {step['synthetic_images']} images, "
            f"teacher agreement {step['teacher_agreement']:.3f}"
        )


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


@app.command()
@user_errors
def run(
    args: Annotated[list[str] | None, typer.Argument(help=ARGS_HELP, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    imports: Imports = None,
) -> None:
    """Run a federated experiment (default: FedAvg on the bundled digits, 10 clients)."""
    from fedforge.api import Experiment

    _print_result(Experiment(_config(args, imports)).run(quiet=quiet))


@app.command()
@user_errors
def resume(
    run_dir: Annotated[Path, typer.Argument(help="A run directory, e.g. runs/fedavg-digits-20261124-101500.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    imports: Imports = None,
) -> None:
    """Continue an interrupted run from its last good checkpoint (the config's imports are re-imported)."""
    from fedforge.api import resume as resume_run

    _imports(imports)
    _print_result(resume_run(run_dir, quiet=quiet))


@app.command()
@user_errors
def serve(
    args: Annotated[list[str] | None, typer.Argument(help=ARGS_HELP, show_default=False)] = None,
    address: Annotated[str, typer.Option(help="host:port to listen on (port 0: any free port).")] = "127.0.0.1:50051",
    token_file: Annotated[
        Path | None, typer.Option(help="Tokens clients must present: TOKEN or ID:TOKEN lines.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain: serve over TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    min_clients: Annotated[int | None, typer.Option(help="Clients needed to start a round (default all).")] = None,
    min_results: Annotated[int | None, typer.Option(help="Results needed to close a round at its deadline.")] = None,
    round_timeout: Annotated[float | None, typer.Option(help="Seconds a round waits for results.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    imports: Imports = None,
) -> None:
    """Serve an experiment to remote clients (`fedforge join`): the same round loop and outputs as `run`."""
    from fedforge.api import Experiment
    from fedforge.config import load_config

    path, overrides = split_args(args)
    flags = {
        "kind": "remote",
        "address": address,
        "token_file": token_file,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "min_clients": min_clients,
        "min_results": min_results,
        "round_timeout": round_timeout,
    }
    given = [f"backend.{k}={v.resolve() if isinstance(v, Path) else v}" for k, v in flags.items() if v is not None]
    _print_result(Experiment(load_config(path, overrides + given + _imports(imports))).run(quiet=quiet))


@app.command()
@user_errors
def join(
    server: Annotated[str, typer.Option(help="The server's host:port.")],
    data: Annotated[
        list[str] | None,
        typer.Option(help="This client's data settings, key=value, repeatable (e.g. --data root=/mnt/data)."),
    ] = None,
    client_id: Annotated[int, typer.Option(help="This client's id (default: the server picks a free one).")] = -1,
    token_file: Annotated[Path | None, typer.Option(help="A file holding this client's token.")] = None,
    ca: Annotated[Path | None, typer.Option(help="PEM CA certificate: connect over TLS and trust this CA.")] = None,
    device: Annotated[str | None, typer.Option(help="Where to train (default auto).")] = None,
    compression: Annotated[str, typer.Option(help="Compress uploads: none or gzip.")] = "none",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    imports: Imports = None,
) -> None:
    """Join a federation served by `fedforge serve` and train on local data until it finishes."""
    from fedforge.config import parse_overrides
    from fedforge.deploy.remote import INSTALL_HINT, grpc_installed
    from fedforge.errors import ConfigError

    if not grpc_installed():
        raise ConfigError(f"fedforge join talks gRPC, which is not installed; {INSTALL_HINT}")
    from fedforge.deploy.client import RemoteClient
    from fedforge.deploy.security import read_token

    _imports(imports)

    items = [item if item.startswith("data.") else f"data.{item}" for item in data or []]
    if device is not None:
        items.append(f"backend.device={device}")
    if compression not in ("none", "gzip"):
        raise ConfigError(f"--compression {compression}: use none or gzip")
    client = RemoteClient(
        server,
        parse_overrides(items),
        client_id,
        read_token(str(token_file) if token_file else None),
        str(ca) if ca else None,
        quiet=quiet,
        compression=compression,
    )
    client.run()


RUN_FIELDS = ("run", "method", "params", "data", "clients", "partition", "rounds", "metric", "final", "best")
RUN_FIELDS += ("wall_s", "status", "run_dir")
TABLE_FIELDS = ("run", "method", "data", "rounds", "metric", "final", "best", "status")  # fits 80 columns


def run_rows(runs_dir: Path) -> list[dict[str, Any]]:
    """One flat row per stored run: its settings and its headline metric (final and best)."""
    from fedforge.tracking.query import load_runs
    from fedforge.tracking.report import algorithm_params, partition_label

    rows = []
    for row in load_runs(runs_dir):
        summary, config = row["summary"], row["config"]
        headline = summary.get("headline") or {"name": "accuracy"}
        rows.append(
            {
                "run": row["name"],
                "method": row["algorithm"],
                "params": algorithm_params(config),
                "data": row["dataset"],
                "clients": config["data"]["num_clients"],
                "partition": partition_label(config),
                "rounds": row["rounds"],
                "metric": headline["name"],
                "final": summary.get("final_metric", row["final_accuracy"]),
                "best": summary.get("best_metric", row["best_accuracy"]),
                "wall_s": row["wall_seconds"],
                "status": row["status"],
                "run_dir": row["run_dir"],
            }
        )
    return rows


@app.command()
@user_errors
def runs(
    runs_dir: Annotated[Path, typer.Argument(help="A runs folder (tracking.runs_dir).")] = Path("runs"),
    output: Annotated[
        str, typer.Option("--format", "-f", help="table (fits 80 columns), csv or json (every field).")
    ] = "table",
) -> None:
    """List the runs stored in a runs folder: settings, status and headline metric (final and best)."""
    import csv
    import json

    if output not in ("table", "csv", "json"):
        raise typer.BadParameter(f"{output}: use table, csv or json", param_hint="--format")
    rows = run_rows(runs_dir)
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    if output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=RUN_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    table = Table(title=f"{len(rows)} runs in {runs_dir}", title_justify="left", box=None, pad_edge=False)
    cells = [
        {**row, "final": _num(row["final"]), "best": _num(row["best"]), "rounds": str(row["rounds"] or "-")}
        for row in rows
    ]
    width = min(out.width, 80) if not out.is_terminal else out.width
    widths = {f: min(16, max([len(f)] + [len(str(c[f])) for c in cells])) for f in TABLE_FIELDS}
    widths["run"] = max(12, width - sum(w + 2 for f, w in widths.items() if f != "run") - 2)
    for field in TABLE_FIELDS:  # fixed widths; what is longer ends in an ellipsis, never wraps
        numeric = field in ("rounds", "final", "best")
        table.add_column(
            field, justify="right" if numeric else "left", overflow="ellipsis", no_wrap=True, max_width=widths[field]
        )
    for cell in cells:
        name = cell["run"]  # its tail (the start time) tells runs of one method and dataset apart
        cell["run"] = name if len(name) <= widths["run"] else "…" + name[-(widths["run"] - 1) :]
        table.add_row(*(str(cell[f]) for f in TABLE_FIELDS))
    Console(width=width).print(table)


@app.command()
@user_errors
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to compare.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the PNGs and report.md.")] = Path("report"),
    target: Annotated[float, typer.Option(help="Accuracy for the 'rounds to reach' column.")] = 0.9,
) -> None:
    """Accuracy curves, client-accuracy distribution, partition heat maps and a comparison table."""
    from fedforge.tracking.report import write_report

    result = write_report(run_dirs, out_dir, target)
    for path in result.files:
        out.print(f"wrote {path}")


@app.command("config")
@user_errors
def show_config(
    args: Annotated[list[str] | None, typer.Argument(help=ARGS_HELP, show_default=False)] = None,
    imports: Imports = None,
) -> None:
    """Print the fully resolved config (every key, its value and meaning) without running it."""
    from fedforge.config import annotated_yaml

    typer.echo(annotated_yaml(_config(args, imports)), nl=False)  # plain text: rich would wrap lines


@app.command("list")
@user_errors
def list_plugins(imports: Imports = None) -> None:
    """List datasets, partitions, models, tasks, algorithms, aggregators, server optimizers and backends."""
    _imports(imports)
    from fedforge import AGGREGATORS, ALGORITHMS, DATASETS, EXECUTORS, MODELS, PARTITIONS, SERVER_OPTIMIZERS, TASKS
    from fedforge.plugins import plugin_params

    for registry, section in (
        (DATASETS, "data.name"),
        (PARTITIONS, "data.partition.kind"),
        (MODELS, "model.name"),
        (TASKS, "task.name"),
        (ALGORITHMS, "algorithm.name"),
        (AGGREGATORS, "aggregation.name"),
        (SERVER_OPTIMIZERS, "server_opt.name"),
        (EXECUTORS, "backend.kind"),
    ):
        table = Table(title=f"{registry.kind}s ({section})", title_justify="left", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("parameters (default)")
        table.add_column("description")
        for name in registry.names():
            entry = registry.get(name)
            params = ""
            if registry is not DATASETS:
                fields = plugin_params(entry).model_fields
                params = ", ".join(f"{k}={_default(f)}" for k, f in fields.items() if k != "device")
            table.add_row(name, params, describe(entry))
        for pattern, text in registry.families().items():
            table.add_row(pattern, "", text)
        out.print(table)


def describe(entry: Any) -> str:
    """An entry's one-line description: the first paragraph of its docstring."""
    doc = inspect.cleandoc(entry.__doc__) if entry.__doc__ else ""
    return " ".join(doc.split("\n\n", 1)[0].split()) or "(no description: add a docstring)"


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return repr(field.default_factory())
    return repr(field.default)


@app.command()
@user_errors
def partition(
    args: Annotated[list[str] | None, typer.Argument(help=ARGS_HELP, show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw a clients x classes heat map (PNG).")] = None,
    imports: Imports = None,
) -> None:
    """Show how a config splits the data: per-client sample counts and label histograms."""
    from fedforge.data.federated import build_federated_dataset

    cfg = _config(args, imports)
    data = build_federated_dataset(cfg)
    hist = data.histogram()
    table = Table(title=f"{cfg.data.name}: {cfg.data.partition.kind} partition over {data.num_clients} clients")
    table.add_column("client", justify="right")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    table.add_column("labels (count per class " + " ".join(str(c) for c in range(data.num_classes)) + ")")
    for cid, row in enumerate(hist):
        table.add_row(
            str(cid), str(int(row.sum())), str(len(data.client_test[cid])), " ".join(str(int(v)) for v in row)
        )
    out.print(table)
    sizes = hist.sum(axis=1)
    out.print(
        f"train samples per client: min {sizes.min()}, median {int(sorted(sizes)[len(sizes) // 2])}, max {sizes.max()}"
    )
    if plot is not None:
        from fedforge.tracking.plots import partition_heatmap
        from fedforge.tracking.report import partition_label

        partition_heatmap(hist, plot, title=f"{cfg.data.name}: {partition_label(cfg.to_dict())}")
        out.print(f"heat map written to {plot}")


def main() -> None:
    app(prog_name="fedforge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
