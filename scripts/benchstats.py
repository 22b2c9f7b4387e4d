"""Statistics over the rounds of ``bench.py``: medians, spreads, a ratio's 95 % interval.

A benchmark runs few rounds (1–10), so everything here is small-sample and
exact about it. A ratio of two throughputs (cschat / relay, a feature /
plain) is summed up on the logarithms of its per-round values: there a
slowdown by a factor and a speed-up by the same factor weigh alike, and the
per-round ratios, which cannot go below 0, are closer to symmetric. The
interval is Student's t on those logarithms, transformed back, i.e. an
interval for the geometric mean of the ratio. No scipy: the t quantiles for
1 to 30 degrees of freedom are tabulated, beyond that approximated.
"""

from __future__ import annotations

import math
import statistics

# The 0.975 quantile of Student's t (two-sided 95 %) for 1..30 degrees of freedom.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z975 = 1.959964
# The difference between two settings "rounds needed" is about: 5 %.
DIFFERENCE = 0.05


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` (>= 1) degrees of freedom.

    Tabulated up to 30; beyond, the Cornish-Fisher expansion
    z + (z^3 + z) / 4df + (5z^5 + 16z^3 + 3z) / 96df^2, within 0.001 there.
    """
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def describe(values: list[float | None]) -> dict:
    """``{"median", "min", "max", "spread_pct"}`` of some rounds' values.

    ``spread_pct`` is (max - min) in % of the median (0 for one round; None
    when the median is 0). Rounds without a value (None) are left out; with
    none left, every field is None.
    """
    known = [v for v in values if v is not None]
    if not known:
        return dict.fromkeys(("median", "min", "max", "spread_pct"))
    middle = statistics.median(known)
    low, high = min(known), max(known)
    return {"median": round(middle, 3), "min": low, "max": high,
            "spread_pct": round(100 * (high - low) / middle, 1) if middle else None}


def log_sd(*series: list[float]) -> float | None:
    """Standard deviation of ln(ratio) between rounds; None below 2 usable rounds.

    Given several ratios' per-round values (e.g. each feature against
    plain), their sample variances are pooled, weighted by their degrees
    of freedom: sqrt(sum((n_i - 1) * s_i^2) / sum(n_i - 1)). Ratios that
    are None or 0 (a side that moved nothing) are left out.
    """
    squares = freedom = 0.0
    for ratios in series:
        logs = [math.log(r) for r in ratios if r is not None and r > 0]
        if len(logs) >= 2:
            squares += (len(logs) - 1) * statistics.variance(logs)
            freedom += len(logs) - 1
    return math.sqrt(squares / freedom) if freedom else None


def ratio_ci95(ratios: list[float]) -> list[float] | None:
    """The 95 % interval of a ratio from its per-round values, or None below 2 rounds.

    With n per-round ratios r_i, m and s the mean and sample standard
    deviation of ln r_i: exp(m -/+ t975(n - 1) * s / sqrt(n)). Ratios that
    are None or 0 are left out.
    """
    logs = [math.log(r) for r in ratios if r is not None and r > 0]
    if len(logs) < 2:
        return None
    half = t975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    mean = statistics.fmean(logs)
    return [round(math.exp(mean - half), 3), round(math.exp(mean + half), 3)]


def rounds_needed(sd: float | None, difference: float = DIFFERENCE, limit: int = 100_000
                  ) -> int | None:
    """Rounds that make a ``difference`` (5 %) in a ratio visible at a spread ``sd``.

    ``sd`` is the standard deviation of ln(ratio) between rounds
    (:func:`log_sd`). The answer is the smallest n >= 2 with

        t975(n - 1) * sd / sqrt(n) <= ln(1 + difference) / 2,

    i.e. the 95 % interval of the ratio (:func:`ratio_ci95`) is at most
    +/- ln(1.05) / 2 (about +/- 2.4 %) wide, so that the intervals of two
    settings whose ratios differ by 5 % (measured with that spread) do not
    overlap. None when ``sd`` is unknown (fewer than 2 rounds) or more than
    ``limit`` rounds would be needed.
    """
    if sd is None:
        return None
    half = math.log(1 + difference) / 2
    for n in range(2, limit + 1):
        if t975(n - 1) * sd / math.sqrt(n) <= half:
            return n
    return None
