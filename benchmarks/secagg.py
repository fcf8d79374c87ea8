"""What secure aggregation costs per round: bytes and seconds of SecAgg and SecAgg+ against plain uploads.

    python benchmarks/secagg.py [--clients 10 50 100] [--length 25000] [--neighbours 8]

One simulated round (privacy/secagg/protocol.py) per row, every client with a random update of
`length` floats (the size of the benchmark cnn); no dropouts, then 30 % dropping after sharing
keys (their masks are rebuilt from shares). SecAgg+ uses a lower share threshold: with k
neighbours and threshold 0.5, a client losing half its neighbours would abort the round.
`up`/`down` are the protocol's bytes per client (keys, encrypted shares, the masked vector, the
unmasking shares), against the 4 bytes per float of a plain upload; seconds are one client's
share of the clients' work and the server's whole.
"""

from __future__ import annotations

import argparse
import sys

import torch

from fedforge.config import SecureAggregationConfig
from fedforge.privacy.secagg.protocol import simulate


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--length", type=int, default=25_000)
    parser.add_argument("--neighbours", type=int, default=16)
    parser.add_argument("--plus-threshold", type=float, default=0.3, help="SecAgg+'s share threshold (default 0.3)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    plain = 4 * args.length
    print("| clients | protocol | dropouts | up KiB / client | down KiB / client | x plain upload "
          "| client s | server s | max error |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.clients:
        g = torch.Generator().manual_seed(n)
        inputs = {c: (torch.randn(args.length, generator=g) * 0.05, 1.0) for c in range(n)}
        plus = SecureAggregationConfig(neighbours=args.neighbours, threshold=args.plus_threshold)
        for name, cfg in (("SecAgg (t=0.5)", SecureAggregationConfig()),
                          (f"SecAgg+ k={args.neighbours} (t={args.plus_threshold})", plus)):  # fmt: skip
            if cfg.neighbours is not None and cfg.neighbours >= n - 1:
                continue
            for drop in (0.0, 0.3):
                gone = frozenset(torch.randperm(n, generator=g)[: round(drop * n)].tolist())
                out = simulate(inputs, cfg, 1.0, 0, 0, dropouts=gone)
                exact = sum(x.double() for c, (x, _) in inputs.items() if c in out.survivors)
                error = float((out.total - exact).abs().max()) if out.total is not None else float("nan")
                print(
                    f"| {n} | {name} | {len(gone)} | {out.bytes_up / n / 1024:.0f} | {out.bytes_down / n / 1024:.1f} "
                    f"| {out.bytes_up / n / plain:.2f} | {out.client_seconds / n:.3f} | {out.server_seconds:.2f} "
                    f"| {error:.1e} |",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:])
