"""The protocol's primitives, all from the `cryptography` package: X25519 key agreement, HKDF-SHA256
key derivation, AES-256-GCM for shares in transit, and AES-256-CTR as the mask generator."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from fedforge.errors import ConfigError

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ConfigError(
        "secure_aggregation needs the `cryptography` package; install it with: pip install 'fedforge[privacy]'"
    ) from err

KEY_BYTES = 32
NONCE_BYTES = 12
RAW = serialization.Encoding.Raw


@dataclass
class KeyPair:
    private: X25519PrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_secret(cls, secret: bytes) -> KeyPair:
        return cls(X25519PrivateKey.from_private_bytes(secret))

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes(RAW, serialization.PublicFormat.Raw)

    @property
    def secret(self) -> bytes:
        return self.private.private_bytes(RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())

    def agree(self, peer_public: bytes, info: bytes) -> bytes:
        """A 32-byte key shared with the owner of `peer_public` (ValueError for a malformed or weak key)."""
        if not isinstance(peer_public, bytes) or len(peer_public) != KEY_BYTES:
            raise ValueError("a public key is 32 bytes")
        shared = self.private.exchange(X25519PublicKey.from_public_bytes(peer_public))  # refuses low-order points
        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)


def random_seed() -> bytes:
    return os.urandom(KEY_BYTES)


def encrypt(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def decrypt(key: bytes, ciphertext: bytes, context: bytes) -> bytes:
    """The plaintext; ValueError when the ciphertext was altered, truncated or made for another key."""
    if not isinstance(ciphertext, bytes) or len(ciphertext) < NONCE_BYTES + 16:
        raise ValueError("a ciphertext is too short")
    try:
        return AESGCM(key).decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], context)
    except InvalidTag:
        raise ValueError("a ciphertext failed authentication") from None


def mask(seed: bytes, length: int, bits: int) -> torch.Tensor:
    """`length` pseudo-random ring elements from a 32-byte seed (AES-256-CTR keystream)."""
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(b"\0" * 16)).encryptor()
    stream = encryptor.update(b"\0" * (8 * length)) + encryptor.finalize()
    words = torch.frombuffer(bytearray(stream), dtype=torch.int64)
    return words & ((1 << bits) - 1)
