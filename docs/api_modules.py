"""The module specs `make docs` gives pdoc: fedforge and its direct submodules (pdoc walks each
subpackage itself), without the generated gRPC code.

pdoc follows `fedforge.__all__`, which names only two subpackages, so the rest are listed here.
"""

import pkgutil

import fedforge

SKIPPED = {"fedforge.__main__"}  # importing it runs the CLI
GENERATED = ["!fedforge.deploy.fedforge_pb2", "!fedforge.deploy.fedforge_pb2_grpc"]  # protoc output
FOLLOWED = {f"fedforge.{name}" for name in fedforge.__all__}  # pdoc reaches these through fedforge itself

children = [m.name for m in pkgutil.iter_modules(fedforge.__path__, "fedforge.")]
print(" ".join(["fedforge", *(n for n in children if n not in SKIPPED | FOLLOWED), *GENERATED]))
