"""The layering of DESIGN section 2 holds, and gRPC is an extra the core runs without."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "fedforge"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_engine_imports_neither_deploy_nor_api():
    above = ("fedforge.deploy", "fedforge.api", "fedforge.cli", "fedforge.backends")
    offenders = {
        path.name: sorted(m for m in imported_modules(path) if m.startswith(above))
        for path in (SRC / "engine").glob("*.py")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_records_and_aggregation_sit_below_methods_and_the_engine():
    for path in [SRC / "records.py", *(SRC / "aggregation").glob("*.py")]:
        upward = [m for m in imported_modules(path) if m.startswith(("fedforge.engine", "fedforge.algorithms"))]
        assert upward == [], (path.name, upward)


WITHOUT_GRPC = """
import sys
sys.modules["grpc"] = None  # as if the deploy extra were not installed
sys.modules["google.protobuf"] = None
import fedforge
from fedforge.config import load_config
from fedforge.errors import ConfigError
assert "remote" in fedforge.EXECUTORS.names()
load_config(None, ["backend.kind=ray"])
try:
    load_config(None, ["backend.kind=remote"])
except ConfigError as err:
    print(err)
assert "grpc" not in [m for m in sys.modules if sys.modules[m] is not None]
"""


def test_the_core_imports_and_validates_without_grpc_and_remote_names_the_extra():
    out = subprocess.run([sys.executable, "-c", WITHOUT_GRPC], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "backend.kind=remote needs gRPC; install it with: pip install 'fedforge[deploy]'" in out.stdout


def test_privacy_sits_below_methods_the_engine_and_deploy():
    above = ("fedforge.engine", "fedforge.algorithms", "fedforge.deploy", "fedforge.api")
    for path in (SRC / "privacy").rglob("*.py"):
        upward = [m for m in imported_modules(path) if m.startswith(above)]
        assert upward == [], (path.name, upward)


WITHOUT_CRYPTOGRAPHY = """
import sys
sys.modules["cryptography"] = None  # as if the privacy extra were not installed
import fedforge
from fedforge.errors import ConfigError
result = fedforge.run(quiet=True, train={"rounds": 1}, data={"num_clients": 4}, model={"norm": "none"},
                      privacy={"noise_multiplier": 0.5}, tracking={"runs_dir": sys.argv[1]})
assert result.summary["privacy"]["epsilon"] > 0
try:
    fedforge.run(quiet=True, train={"rounds": 1}, secure_aggregation={}, tracking={"runs_dir": sys.argv[1]})
except ConfigError as err:
    print(err)
"""


def test_dp_runs_without_cryptography_and_secure_aggregation_names_the_extra(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_CRYPTOGRAPHY, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "pip install 'fedforge[privacy]'" in out.stdout
