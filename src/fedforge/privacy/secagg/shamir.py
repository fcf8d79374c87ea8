"""Shamir secret sharing over the prime field GF(2^521 - 1): any `threshold` shares rebuild a
secret, fewer reveal nothing about it (every secret is consistent with them)."""

from __future__ import annotations

import secrets

PRIME = 2**521 - 1  # a Mersenne prime above every 32-byte secret
SHARE_BYTES = 66  # a field element, big-endian


def split(secret: bytes, holders: list[int], threshold: int) -> dict[int, bytes]:
    """One share of `secret` per holder id (evaluation point id + 1, never 0)."""
    if not 1 <= threshold <= len(holders):
        raise ValueError(f"threshold {threshold} needs between 1 and {len(holders)} holders")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = {}
    for holder in holders:
        x, y = holder + 1, 0
        for c in reversed(coefficients):
            y = (y * x + c) % PRIME
        shares[holder] = y.to_bytes(SHARE_BYTES, "big")
    return shares


def parse_share(share: object) -> int:
    """A share's field element; ValueError for anything that is not one."""
    if not isinstance(share, bytes) or len(share) != SHARE_BYTES:
        raise ValueError(f"a share is {SHARE_BYTES} bytes, not {len(share) if isinstance(share, bytes) else share!r}")
    value = int.from_bytes(share, "big")
    if value >= PRIME:
        raise ValueError("a share is not an element of the field")
    return value


def combine(shares: dict[int, bytes], threshold: int, size: int = 32) -> bytes:
    """The secret from at least `threshold` shares (Lagrange interpolation at 0); refuses fewer."""
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares cannot rebuild a secret shared with threshold {threshold}")
    points = [(holder + 1, parse_share(share)) for holder, share in sorted(shares.items())[:threshold]]
    secret = 0
    for i, (xi, yi) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                numerator = numerator * -xj % PRIME
                denominator = denominator * (xi - xj) % PRIME
        secret = (secret + yi * numerator * pow(denominator, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * size):
        raise ValueError("the shares do not rebuild a secret of this size (a share was wrong)")
    return secret.to_bytes(size, "big")
