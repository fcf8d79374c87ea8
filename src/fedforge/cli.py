"""Command line: `fedforge run | resume | serve | join | runs | report | config | list | partition`.

Every input error (FedforgeError) becomes one paragraph on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import functools
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from fedforge.errors import FedforgeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="fedforge: federated learning for computer vision. Start with `fedforge run`.",
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

ARGS_HELP = (
    "An optional YAML config, then overrides as key.sub=value "
    "(e.g. configs/digits_fedprox.yaml train.rounds=5 algorithm.mu=0.1)."
)


def user_errors(fn: F) -> F:
    """Print input errors as one paragraph and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FedforgeError as exc:
            err.print("[bold red]error:[/] ", end="", highlight=False)
            err.print(_printable(str(exc)), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


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


def _config(args: list[str] | None):
    from fedforge.config import load_config

    path, overrides = split_args(args)
    return load_config(path, overrides)


def _print_result(result) -> None:
    s = result.summary
    out.print(f"run directory: {result.run_dir}")
    what = result.config.task.resolve().headline.describe()
    out.print(
        f"final {what}: {_num(s['final_metric'])} (best {_num(s['best_metric'])}) after {s['rounds']} rounds, "
        f"{s['wall_seconds']:.1f} s"
    )
    if s.get("final_metrics"):
        out.print("further metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in s["final_metrics"].items()))
    if s["final_personalized_accuracy"] is not None:
        out.print(
            f"client accuracy: mean {s['final_personalized_accuracy']:.4f}, worst 10% {s['final_worst10_accuracy']:.4f}"
        )
    if s.get("final_domain_accuracy"):
        per_domain = ", ".join(f"{k} {v:.4f}" for k, v in s["final_domain_accuracy"].items())
        out.print(f"domain accuracy: mean {s['final_domain_mean_accuracy']:.4f} ({per_domain})")
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
) -> None:
    """Run a federated experiment (default: FedAvg on the bundled digits, 10 clients)."""
    from fedforge.api import Experiment

    _print_result(Experiment(_config(args)).run(quiet=quiet))


@app.command()
@user_errors
def resume(
    run_dir: Annotated[Path, typer.Argument(help="A run directory, e.g. runs/fedavg-digits-20261124-101500.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Continue an interrupted run from its last good checkpoint."""
    from fedforge.api import resume as resume_run

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
    _print_result(Experiment(load_config(path, overrides + given)).run(quiet=quiet))


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
) -> None:
    """Join a federation served by `fedforge serve` and train on local data until it finishes."""
    from fedforge.config import parse_overrides
    from fedforge.deploy.remote import INSTALL_HINT, grpc_installed
    from fedforge.errors import ConfigError

    if not grpc_installed():
        raise ConfigError(f"fedforge join talks gRPC, which is not installed; {INSTALL_HINT}")
    from fedforge.deploy.client import RemoteClient
    from fedforge.deploy.security import read_token

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


@app.command()
@user_errors
def runs(
    runs_dir: Annotated[Path, typer.Argument(help="A runs folder (tracking.runs_dir).")] = Path("runs"),
) -> None:
    """List the runs stored in a runs folder with their key settings and final metrics."""
    from fedforge.tracking.query import load_runs
    from fedforge.tracking.report import algorithm_params, partition_label

    rows = load_runs(runs_dir)
    table = Table(title=f"{len(rows)} runs in {runs_dir}", title_justify="left")
    numeric = {"rounds", "final acc", "best acc", "wall s"}
    for col in ("run", "method", "data (clients)", "partition", "rounds", "final acc", "best acc", "wall s", "status"):
        table.add_column(col, justify="right" if col in numeric else "left", overflow="fold")
    for row in rows:
        params = algorithm_params(row["config"])
        table.add_row(
            row["name"],
            row["algorithm"] + ("" if params == "-" else f" ({params})"),
            f"{row['dataset']} ({row['config']['data']['num_clients']})",
            partition_label(row["config"]),
            str(row["rounds"] if row["rounds"] is not None else "-"),
            _num(row["final_accuracy"]),
            _num(row["best_accuracy"]),
            _num(row["wall_seconds"], 1),
            row["status"],
        )
    out.print(table)


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
) -> None:
    """Print the fully resolved config (every key, its value and meaning) without running it."""
    from fedforge.config import annotated_yaml

    typer.echo(annotated_yaml(_config(args)), nl=False)  # plain text: rich would wrap lines


@app.command("list")
@user_errors
def list_plugins() -> None:
    """List datasets, partitions, models, tasks, algorithms, aggregators, server optimizers and backends."""
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
            doc = (entry.__doc__ or "").strip().splitlines()
            table.add_row(name, params, doc[0] if doc else "")
        out.print(table)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return repr(field.default_factory())
    return repr(field.default)


@app.command()
@user_errors
def partition(
    args: Annotated[list[str] | None, typer.Argument(help=ARGS_HELP, show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw a clients x classes heat map (PNG).")] = None,
) -> None:
    """Show how a config splits the data: per-client sample counts and label histograms."""
    from fedforge.data.federated import build_federated_dataset

    cfg = _config(args)
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
