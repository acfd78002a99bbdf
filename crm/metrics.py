"""Statistics of proportions, means and scores (pure: no database), shared by every layer."""

import math

from scipy.stats import t as t_distribution

Z_95 = 1.959963984540054

# Net Promoter Score: answers to "would you recommend us?" from 0 to 10. Promoters answer 9
# or 10, detractors 0 to 6 (passives, 7 and 8, count in the answers only). Every query,
# page and SQL statement reads these two numbers from here.
NPS_PROMOTER_MIN = 9
NPS_DETRACTOR_MAX = 6


def wilson_interval(successes: int, n: int, *, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (95% by default); None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_difference_interval(
    k1: int, n1: int, k2: int, n2: int, *, z: float = Z_95
) -> tuple[float, float] | None:
    """Normal-approximation interval of p1 - p2 (Wald, unpooled); None when a group is empty."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = k1 / n1, k2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return p1 - p2 - z * se, p1 - p2 + z * se


def welch_interval(
    n1: int, sum1: float, sumsq1: float, n2: int, sum2: float, sumsq2: float
) -> tuple[float, float] | None:
    """Welch 95% interval of mean1 - mean2 from counts, sums and sums of squares.

    None when a group has fewer than two members (no variance to speak of).
    """
    if n1 < 2 or n2 < 2:
        return None
    m1, m2 = sum1 / n1, sum2 / n2
    v1 = max(0.0, (sumsq1 - n1 * m1 * m1) / (n1 - 1))
    v2 = max(0.0, (sumsq2 - n2 * m2 * m2) / (n2 - 1))
    a, b = v1 / n1, v2 / n2
    se = math.sqrt(a + b)
    if se == 0:
        return m1 - m2, m1 - m2
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    half = float(t_distribution.ppf(0.975, df)) * se
    return m1 - m2 - half, m1 - m2 + half


def nps_is_promoter(score: int) -> bool:
    return score >= NPS_PROMOTER_MIN


def nps_is_detractor(score: int) -> bool:
    return score <= NPS_DETRACTOR_MAX


def nps_value(*, promoters: int, detractors: int, answers: int) -> float | None:
    """Net Promoter Score: % promoters - % detractors, from -100 to 100; None without answers."""
    if answers <= 0:
        return None
    return 100 * (promoters - detractors) / answers
