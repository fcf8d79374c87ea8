"""RDP accounting for the subsampled Gaussian mechanism (Mironov, Talwar and Zhang 2019).

One step releases a sum with Gaussian noise of std `z` times its sensitivity over a Poisson
sample of rate `q`; steps compose by adding their Rényi divergences. The (epsilon, delta) bound
uses the conversion of Balle et al. (2020, Thm 21), tighter than the classic one. The orders
are Opacus' default grid, so the numbers agree with its `RDPAccountant` (tested to 1e-3).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy import special

DEFAULT_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)])


def _log_add(a: float, b: float) -> float:
    """log(e^a + e^b) without overflow."""
    high, low = max(a, b), min(a, b)
    return high if low == -math.inf else high + math.log1p(math.exp(low - high))


def _log_sub(a: float, b: float) -> float:
    """log(e^a - e^b) for a >= b."""
    if b == -math.inf:
        return a
    if a <= b:
        return -math.inf  # e^a - e^b underflowed to (or below) zero
    return a + math.log(-math.expm1(b - a))


def _log_a_integer(q: float, sigma: float, alpha: int) -> float:
    """log A_alpha for integer alpha: the binomial expansion of E[(mu_1 / mu_0)^alpha] (Mironov et al. eq. 3)."""
    total = -math.inf
    for i in range(alpha + 1):
        log_binom = math.lgamma(alpha + 1) - math.lgamma(i + 1) - math.lgamma(alpha - i + 1)
        term = log_binom + i * math.log(q) + (alpha - i) * math.log1p(-q) + (i * i - i) / (2 * sigma**2)
        total = _log_add(total, term)
    return total


def _log_erfc(x: float) -> float:
    return math.log(2.0) + float(special.log_ndtr(-x * math.sqrt(2.0)))


def _log_a_fractional(q: float, sigma: float, alpha: float) -> float:
    """log A_alpha for fractional alpha: the two convergent series split at z0 (Mironov et al. section 3.3)."""
    log_a0, log_a1 = -math.inf, -math.inf
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    i = 0
    while True:
        coef = special.binom(alpha, i)
        log_coef = math.log(abs(coef))
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log1p(-q)
        log_t1 = log_coef + j * math.log(q) + i * math.log1p(-q)
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma**2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma**2) + log_e1
        if coef > 0:
            log_a0, log_a1 = _log_add(log_a0, log_s0), _log_add(log_a1, log_s1)
        else:
            log_a0, log_a1 = _log_sub(log_a0, log_s0), _log_sub(log_a1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30:
            return _log_add(log_a0, log_a1)


def rdp_one_step(q: float, noise_multiplier: float, order: float) -> float:
    """The Rényi divergence of order `order` of one step of the subsampled Gaussian."""
    if q == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    if q == 1.0:
        return order / (2 * noise_multiplier**2)
    if float(order).is_integer():
        log_a = _log_a_integer(q, noise_multiplier, int(order))
    else:
        log_a = _log_a_fractional(q, noise_multiplier, float(order))
    return log_a / (order - 1)


@functools.lru_cache(maxsize=256)
def _step_curve(q: float, noise_multiplier: float, orders: tuple[float, ...]) -> np.ndarray:
    return np.array([rdp_one_step(q, noise_multiplier, a) for a in orders])


def rdp(q: float, noise_multiplier: float, steps: int, orders: Sequence[float] = DEFAULT_ORDERS) -> np.ndarray:
    """The RDP of `steps` composed steps, one value per order (steps compose additively)."""
    return _step_curve(float(q), float(noise_multiplier), tuple(orders)) * steps


def epsilon_from_rdp(rdp_values: np.ndarray, delta: float, orders: Sequence[float] = DEFAULT_ORDERS) -> float:
    """The smallest epsilon over the orders at which the RDP curve gives (epsilon, delta)-DP."""
    a = np.asarray(orders, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        eps = rdp_values - (math.log(delta) + np.log(a)) / (a - 1) + np.log((a - 1) / a)
    eps = np.where(np.isnan(eps), np.inf, eps)
    best = float(eps.min())
    return max(best, 0.0)


def epsilon(q: float, noise_multiplier: float, steps: int, delta: float) -> float:
    """(epsilon, `delta`)-DP of `steps` steps of the Gaussian mechanism with sampling rate `q`.

    Infinite without noise (z=0), zero before the first step."""
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    return epsilon_from_rdp(rdp(q, noise_multiplier, steps), delta)


def noise_for_budget(q: float, steps: int, delta: float, target_epsilon: float, tolerance: float = 1e-3) -> float:
    """The smallest noise multiplier whose `steps` steps spend at most `target_epsilon` (bisection)."""
    low, high = 0.0, 1.0
    while epsilon(q, high, steps, delta) > target_epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise ValueError(f"no noise multiplier up to 1e4 keeps epsilon at {target_epsilon} over {steps} steps")
    while high - low > tolerance:
        mid = (low + high) / 2
        if epsilon(q, mid, steps, delta) > target_epsilon:
            low = mid
        else:
            high = mid
    return high


def steps_within_budget(q: float, noise_multiplier: float, delta: float, target_epsilon: float, limit: int) -> int:
    """How many steps (at most `limit`) keep epsilon within `target_epsilon`."""
    if epsilon(q, noise_multiplier, limit, delta) <= target_epsilon:
        return limit
    low, high = 0, limit  # epsilon grows with steps: eps(low) <= target < eps(high)
    while high - low > 1:
        mid = (low + high) // 2
        if epsilon(q, noise_multiplier, mid, delta) <= target_epsilon:
            low = mid
        else:
            high = mid
    return low
