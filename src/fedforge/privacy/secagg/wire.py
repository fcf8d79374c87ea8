"""SecAgg messages as named tensors, so any job/result channel (the gRPC codec) carries them.

A map of client id -> bytes travels as three tensors (ids, offsets, one byte blob), whatever
the cohort's size; every decoder checks shapes, dtypes and offsets and raises ValueError on
anything malformed, which the receiver records as that peer's fault.
"""

from __future__ import annotations

import torch

from fedforge.privacy.secagg.protocol import Setup

STAGE = "secagg/stage"  # a job's stage: 2 share keys, 3 masked input, 4 unmask (1 is the training job)
ADVERT_KEYS = ("share_key", "mask_key", "commitment", "weight")


def _bytes(t: object) -> bytes:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.dim() != 1:
        raise ValueError("a byte field is not a 1-d uint8 tensor")
    return t.numpy().tobytes()


def _tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def pack_map(prefix: str, mapping: dict[int, bytes]) -> dict[str, torch.Tensor]:
    ids = sorted(mapping)
    sizes = [len(mapping[i]) for i in ids]
    offsets = torch.tensor([0, *sizes], dtype=torch.int64).cumsum(0)
    return {
        f"{prefix}/ids": torch.tensor(ids, dtype=torch.int64),
        f"{prefix}/offsets": offsets,
        f"{prefix}/blob": _tensor(b"".join(mapping[i] for i in ids)),
    }


def unpack_map(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[int, bytes]:
    try:
        ids, offsets, blob = (tensors[f"{prefix}/{k}"] for k in ("ids", "offsets", "blob"))
    except KeyError:
        raise ValueError(f"the message lacks {prefix}") from None
    if ids.dtype != torch.int64 or offsets.dtype != torch.int64 or ids.dim() != 1 or offsets.shape != (len(ids) + 1,):
        raise ValueError(f"{prefix}: ids and offsets do not match")
    data = _bytes(blob)
    bounds = offsets.tolist()
    if bounds[0] != 0 or bounds[-1] != len(data) or any(b > a for a, b in zip(bounds[1:], bounds[:-1], strict=True)):
        raise ValueError(f"{prefix}: the offsets do not cut the blob")
    keys = ids.tolist()
    if len(set(keys)) != len(keys):
        raise ValueError(f"{prefix}: an id repeats")
    return {k: data[bounds[n] : bounds[n + 1]] for n, k in enumerate(keys)}


def advert_to_tensors(message: dict[str, bytes]) -> dict[str, torch.Tensor]:
    return {f"secagg/{k}": _tensor(message[k]) for k in ADVERT_KEYS}


def advert_from_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, bytes]:
    return {k: _bytes(tensors[f"secagg/{k}"]) for k in ADVERT_KEYS if f"secagg/{k}" in tensors}


def setup_to_tensors(setup: Setup) -> dict[str, torch.Tensor]:
    keys = {j: share + mask for j, (share, mask) in setup.neighbours.items()}
    return {
        STAGE: torch.tensor([2]),
        "secagg/step": torch.tensor([setup.step], dtype=torch.float64),
        "secagg/threshold": torch.tensor([setup.threshold]),
        **pack_map("secagg/keys", keys),
    }


def setup_from_tensors(tensors: dict[str, torch.Tensor], round_index: int) -> Setup:
    keys = unpack_map("secagg/keys", tensors)
    if any(len(v) != 64 for v in keys.values()):
        raise ValueError("a neighbour's keys are not 2 x 32 bytes")
    step, threshold = float(tensors["secagg/step"][0]), int(tensors["secagg/threshold"][0])
    return Setup(round_index, step, threshold, {j: (v[:32], v[32:]) for j, v in keys.items()})


def routed_to_tensors(ciphertexts: dict[int, bytes]) -> dict[str, torch.Tensor]:
    return {STAGE: torch.tensor([3]), **pack_map("secagg/from", ciphertexts)}


def masked_to_tensors(message: dict[str, bytes]) -> dict[str, torch.Tensor]:
    return {"secagg/masked": _tensor(message["masked"]), "secagg/bad": _tensor(message["bad"])}


def masked_from_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, bytes]:
    return {"masked": _bytes(tensors["secagg/masked"]), "bad": _bytes(tensors.get("secagg/bad", _tensor(b"")))}


def survivors_to_tensors(survivors: list[int]) -> dict[str, torch.Tensor]:
    return {STAGE: torch.tensor([4]), "secagg/survivors": torch.tensor(survivors, dtype=torch.int64)}


def survivors_from_tensors(tensors: dict[str, torch.Tensor]) -> list[int]:
    return [int(c) for c in tensors["secagg/survivors"].tolist()]
