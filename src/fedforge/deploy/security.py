"""Who may talk to a server: tokens (shared or per client) and TLS credentials."""

from __future__ import annotations

import hmac
import sys
from pathlib import Path

import grpc

from fedforge.errors import ConfigError

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
MIN_TOKEN_CHARS = 4


def _read_text(file: Path, what: str) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what}: cannot read '{file}' as UTF-8 text ({err})") from None


class TokenBook:
    """Tokens from a file: a line `TOKEN` admits any client, `ID:TOKEN` only client ID.

    Blank lines and lines starting with # are ignored. No file: no token is required."""

    def __init__(self, shared: list[str], per_client: dict[int, str]) -> None:
        self.shared, self.per_client = shared, per_client

    @classmethod
    def load(cls, path: str | None) -> TokenBook | None:
        if path is None:
            return None
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"backend.token_file: '{file}' does not exist; write one token per line (or ID:TOKEN)")
        shared, per_client = [], {}
        for number, raw in enumerate(_read_text(file, "backend.token_file").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            head, sep, tail = line.partition(":")
            token = tail.strip() if sep and head.strip().isdigit() else line
            if len(token) < MIN_TOKEN_CHARS:  # `0:` would admit callers that send no token at all
                raise ConfigError(
                    f"backend.token_file: '{file}' line {number} has an empty token or one shorter than "
                    f"{MIN_TOKEN_CHARS} characters; write TOKEN or ID:TOKEN"
                )
            if sep and head.strip().isdigit():
                per_client[int(head)] = token
            else:
                shared.append(token)
        if not shared and not per_client:
            raise ConfigError(f"backend.token_file: '{file}' holds no token")
        return cls(shared, per_client)

    def clients_for(self, token: str) -> set[int] | None:
        """The client ids this token may act as: None for every id; an empty set refuses it."""
        if any(hmac.compare_digest(token, t) for t in self.shared):
            return None
        return {cid for cid, t in self.per_client.items() if hmac.compare_digest(token, t)}


def bearer(metadata: tuple[tuple[str, str], ...] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization" and value.startswith("Bearer "):
            return value[len("Bearer ") :]
    return ""


def read_token(path: str | None) -> str:
    """A client's token: the first token line of its file (`ID:TOKEN` lines give their token)."""
    if path is None:
        return ""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--token-file '{file}' does not exist")
    for raw in _read_text(file, "--token-file").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            head, sep, tail = line.partition(":")
            return tail.strip() if sep and head.strip().isdigit() else line
    raise ConfigError(f"--token-file '{path}' holds no token")


def server_credentials(cert: str | None, key: str | None) -> grpc.ServerCredentials | None:
    if (cert is None) != (key is None):
        raise ConfigError("backend.tls_cert and backend.tls_key go together: give both (or neither)")
    if cert is None or key is None:
        return None
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if not Path(path).is_file():
            raise ConfigError(f"backend.{name}: '{path}' does not exist")
    return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])


def warn_if_exposed(address: str, tls: bool) -> None:
    """Tokens and weights travel in clear text without TLS: say so unless only this machine can listen."""
    host = address.rpartition(":")[0]
    if not tls and host not in LOOPBACK:
        print(
            f"WARNING: serving on {address} WITHOUT TLS: tokens and model weights cross the network in clear "
            "text. Use --tls-cert/--tls-key (clients: --ca), or bind to 127.0.0.1.",
            file=sys.stderr,
            flush=True,
        )
