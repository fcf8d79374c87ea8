"""Secure aggregation (SecAgg, Bonawitz et al. 2017; SecAgg+, Bell et al. 2020).

`ring` quantizes updates into Z_(2^bits), `shamir` shares secrets with a threshold, `keys` holds
the X25519 / HKDF / AES primitives, and `protocol` runs the four stages between clients and a
server that only ever sees masked vectors.
"""


class SecAggAborted(RuntimeError):
    """The round cannot be unmasked: too few survivors or valid shares (the server learns nothing)."""
