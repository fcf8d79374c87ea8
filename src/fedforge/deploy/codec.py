"""Jobs and results on the wire: a header, then raw little-endian tensor bytes in chunks.

Nothing is pickled: a peer's bytes only ever become numbers, checked against the sizes the
header declares (and a size limit); memory grows only as the bytes arrive. Headers are bounded
too (tensor count, dimensions, metric count, name lengths), since their contents reach the run
store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from fedforge.algorithms.base import MODEL, ClientJob, ClientResult
from fedforge.deploy import fedforge_pb2 as pb
from fedforge.errors import FedforgeError

PROTOCOL = 2  # 2: tensors named by payload entry, entry weights, simulated attacks
CHUNK_BYTES = 1 << 20  # well under gRPC's 4 MiB message limit
MAX_MESSAGE_BYTES = CHUNK_BYTES + (1 << 20)  # one chunk plus a header: larger messages are refused by gRPC
MAX_TENSORS, MAX_DIMS, MAX_METRICS, MAX_NAME, MAX_ERROR = 1024, 8, 256, 256, 4096
DTYPES: dict[str, tuple[torch.dtype, str]] = {  # wire name: (torch dtype, little-endian numpy dtype)
    "float32": (torch.float32, "<f4"),
    "float64": (torch.float64, "<f8"),
    "int64": (torch.int64, "<i8"),
    "int32": (torch.int32, "<i4"),
    "uint8": (torch.uint8, "u1"),
    "bool": (torch.bool, "?"),
}
DTYPE_NAMES = {torch_dtype: name for name, (torch_dtype, _) in DTYPES.items()}
Kind = pb.PayloadHeader.Kind


class MalformedPayload(FedforgeError):
    """A peer sent a stream that does not describe a valid payload (it is dropped, never half-read)."""


@dataclass
class Payload:
    kind: int
    session: str = ""
    client_id: int = 0
    round: int = 0
    num_samples: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    error: str = ""
    entry_weights: dict[str, float] = field(default_factory=dict)
    attack: str = ""


def encode(payload: Payload) -> Iterator[pb.Chunk]:
    """The header chunk, then every tensor's bytes in order, at most CHUNK_BYTES per chunk."""
    header = pb.PayloadHeader(
        kind=payload.kind,
        session=payload.session,
        client_id=payload.client_id,
        round=payload.round,
        num_samples=payload.num_samples,
        metrics={k: float(v) for k, v in payload.metrics.items()},
        error=payload.error,
        entry_weights={k: float(v) for k, v in payload.entry_weights.items()},
        attack=payload.attack,
    )
    arrays = []
    for name, tensor in payload.tensors.items():
        if tensor.dtype not in DTYPE_NAMES:
            raise TypeError(f"tensor '{name}' is {tensor.dtype}; the wire carries {', '.join(DTYPES)}")
        name_on_wire = DTYPE_NAMES[tensor.dtype]
        header.tensors.add(name=name, dtype=name_on_wire, shape=list(tensor.shape))
        arrays.append(tensor.detach().cpu().contiguous().numpy().astype(DTYPES[name_on_wire][1], copy=False))
    yield pb.Chunk(header=header)
    for array in arrays:
        view = memoryview(array.reshape(-1).view(np.uint8))
        for start in range(0, len(view), CHUNK_BYTES):
            yield pb.Chunk(data=bytes(view[start : start + CHUNK_BYTES]))


class PayloadReader:
    """One payload read as it arrives: the header is checked first, then memory grows only with
    the bytes actually received (a header that declares a gigabyte costs nothing until they come)."""

    def __init__(self, first: pb.Chunk | None, max_bytes: int) -> None:
        if first is None or first.WhichOneof("part") != "header":
            raise MalformedPayload("the stream does not start with a header")
        self.header = header = first.header
        check_header(header)
        self.specs: list[tuple[pb.TensorSpec, int, int]] = []
        total = 0
        for spec in header.tensors:
            if spec.dtype not in DTYPES:
                raise MalformedPayload(f"tensor '{spec.name[:64]}' has unknown dtype '{spec.dtype[:32]}'")
            if len(spec.shape) > MAX_DIMS or any(dim < 0 for dim in spec.shape):
                raise MalformedPayload(
                    f"tensor '{spec.name[:64]}' has shape {list(spec.shape)[: MAX_DIMS + 1]}: at most {MAX_DIMS} "
                    "non-negative dimensions"
                )
            itemsize = np.dtype(DTYPES[spec.dtype][1]).itemsize
            # Zero-sized dimensions must not hide absurd others (torch overflows computing strides).
            if math.prod(max(dim, 1) for dim in spec.shape) * itemsize > max(max_bytes, itemsize):
                raise MalformedPayload(f"the payload declares more than {max_bytes} bytes (the server's limit)")
            nbytes = math.prod(spec.shape) * itemsize
            self.specs.append((spec, total, nbytes))
            total += nbytes
            if total > max_bytes:
                raise MalformedPayload(f"the payload declares more than {max_bytes} bytes (the server's limit)")
        self.total = total
        self.buffer = bytearray()

    def feed(self, chunk: pb.Chunk) -> None:
        if chunk.WhichOneof("part") != "data":
            raise MalformedPayload("a second header inside one payload")
        if len(self.buffer) + len(chunk.data) > self.total:
            raise MalformedPayload(f"more data than the header declares ({self.total} bytes)")
        self.buffer += chunk.data

    def finish(self) -> Payload:
        if len(self.buffer) != self.total:
            raise MalformedPayload(f"the stream ended after {len(self.buffer)} of {self.total} declared bytes")
        tensors = {}
        for spec, offset, nbytes in self.specs:
            wire = np.dtype(DTYPES[spec.dtype][1])
            array = np.frombuffer(self.buffer, dtype=wire, count=nbytes // wire.itemsize, offset=offset)
            tensors[spec.name] = torch.from_numpy(array.astype(wire.newbyteorder("="))).reshape(tuple(spec.shape))
        header = self.header
        return Payload(
            kind=header.kind,
            session=header.session,
            client_id=header.client_id,
            round=header.round,
            num_samples=header.num_samples,
            metrics=dict(header.metrics),
            tensors=tensors,
            error=header.error,
            entry_weights=dict(header.entry_weights),
            attack=header.attack,
        )


def check_header(header: pb.PayloadHeader) -> None:
    """Bounds on everything a header may carry besides tensor sizes (what reaches the run store)."""
    if len(header.tensors) > MAX_TENSORS:
        raise MalformedPayload(f"the payload declares {len(header.tensors)} tensors; at most {MAX_TENSORS}")
    names = [spec.name for spec in header.tensors]
    if len(set(names)) != len(names) or any(len(name) > MAX_NAME for name in names):
        raise MalformedPayload(f"tensor names must be unique and at most {MAX_NAME} characters")
    if len(header.metrics) > MAX_METRICS or any(len(key) > MAX_NAME for key in header.metrics):
        raise MalformedPayload(f"at most {MAX_METRICS} metrics with names of at most {MAX_NAME} characters")
    if len(header.entry_weights) > MAX_TENSORS or any(len(key) > MAX_NAME for key in header.entry_weights):
        raise MalformedPayload(f"at most {MAX_TENSORS} entry weights with names of at most {MAX_NAME} characters")
    if len(header.attack) > MAX_NAME:
        raise MalformedPayload(f"an attack name longer than {MAX_NAME} characters")
    if len(header.error) > MAX_ERROR:
        raise MalformedPayload(f"an error message longer than {MAX_ERROR} characters")


def decode(chunks: Iterable[pb.Chunk], max_bytes: int) -> Payload:
    """Read one payload; MalformedPayload if the stream disagrees with its header or is too large."""
    stream = iter(chunks)
    reader = PayloadReader(next(stream, None), max_bytes)
    for chunk in stream:
        reader.feed(chunk)
    return reader.finish()


def _tensors(entries: dict[str, object]) -> dict[str, torch.Tensor]:
    for key, value in entries.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"payload entry '{key}' is a {type(value).__name__}; only tensors cross the network")
    return dict(entries)  # type: ignore[arg-type]


def job_payload(job: ClientJob, session: str) -> Payload:
    return Payload(Kind.JOB, session, job.client_id, job.round, tensors=_tensors(job.payload), attack=job.attack)


def job_from(payload: Payload) -> ClientJob:
    """A training job (it carries the model), or a secure aggregation stage (`secagg/stage`)."""
    if MODEL not in payload.tensors and "secagg/stage" not in payload.tensors:
        raise MalformedPayload(f"a job without its '{MODEL}' entry")
    return ClientJob(payload.client_id, payload.round, payload.tensors, payload.attack)


def result_payload(result: ClientResult, session: str, round_index: int) -> Payload:
    metrics = {k: float(v) for k, v in result.metrics.items()}
    return Payload(
        Kind.RESULT, session, result.client_id, round_index, result.num_samples, metrics, _tensors(result.update),
        entry_weights=dict(result.entry_weights),
    )  # fmt: skip


def result_from(payload: Payload) -> ClientResult:
    """The upload as a ClientResult; missing or unexpected entries are left to validation (it rejects them)."""
    return ClientResult(
        payload.client_id, payload.tensors, int(payload.num_samples), payload.metrics, payload.entry_weights
    )
