"""Customer predictions: BG/NBD (will they buy again, how often) and Gamma-Gamma (how much).

Pure numpy/scipy/pandas, no Django. The models and their formulas are those of
Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model" (BG/NBD), and Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value
Curves for Customer Base Analysis", with Fader & Hardie (2013), "The Gamma-Gamma Model of
Monetary Value" (Gamma-Gamma).

Conventions, as in the papers: purchases on the same day are one transaction; x is the number
of repeat transactions (days with a purchase after the first), t_x the time from the first to
the last purchase, T the time from the first purchase to the as-of date, all in a chosen time
unit (weeks in the papers); the monetary value is the mean of the repeat transactions only,
because the first purchase is often unlike the rest (a welcome offer, a starter kit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from scipy import optimize, special

DAYS_PER_MONTH = 365.25 / 12
# Log-parameters are searched in [-LOG_BOUND, LOG_BOUND] (e^-12 ~ 6e-6 to e^12 ~ 160,000):
# wide enough for any sensible fit; a parameter that ends on this bound means the data did
# not pin it down.
LOG_BOUND = 12.0
# Fewer repeat customers than this and the fit is not trusted. Chosen by measurement: 40 random
# subsamples of the CDNOW sample per size, each fitted and used to predict the 2,357
# customers' next 52 weeks against the full-sample fit. Median (90th percentile) error of the
# total: 50 customers (~20 repeat) 24% (64%); 100 (~41) 18% (43%); 200 (~79) 12% (30%);
# 400 (~158) 5% (17%); 800 (~322) 4% (10%); 1600 (~644) 1% (6%). a and b swing by a factor
# of 25 or more between the 10th and 90th percentile up to 200 customers, of 3-5 at 400.
MIN_REPEAT_CUSTOMERS = 150
# Purchases in the next year above this per customer on average are not plausible for a
# store whose customers buy a few times a year; it flags a fit that ran away.
MAX_EXPECTED_PER_YEAR = 365.0


@dataclass(frozen=True)
class BgNbd:
    """A fitted BG/NBD model: purchase rate ~ Gamma(r, alpha), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    converged: bool
    at_bound: tuple[str, ...]
    customers: int
    fit_seconds: float
    # Evaluations of the likelihood the fit took, a discarded start's included.
    evaluations: int = 0
    # Where the answer's search began: "start" (the start it was given), "zeros" (every
    # parameter 1, when given none) or "zeros instead" (the given start did not lead to a
    # trusted answer; see _minimise).
    started_from: str = "zeros"


@dataclass(frozen=True)
class GammaGamma:
    """A fitted Gamma-Gamma model of the mean transaction value of repeat customers."""

    p: float
    q: float
    gamma: float
    log_likelihood: float
    converged: bool
    at_bound: tuple[str, ...]
    customers: int
    fit_seconds: float = 0.0
    evaluations: int = 0
    started_from: str = "zeros"  # as BgNbd's


def rfm_summary(
    transactions: pd.DataFrame, *, as_of: date, time_unit_days: float = 7.0
) -> pd.DataFrame:
    """One row per customer (index customer_id): x, t_x, T, monetary and first/last day.

    ``transactions`` has columns customer_id, date (anything pandas reads as a date; only the
    day counts) and amount. Purchases after ``as_of`` are left out; purchases on it count.
    """
    frame = pd.DataFrame(
        {
            "customer_id": transactions["customer_id"].to_numpy(),
            "day": _days(transactions["date"]),
            "amount": transactions["amount"].to_numpy(dtype=np.float64),
        }
    )
    frame = frame[frame["day"] <= np.datetime64(as_of, "D")]
    daily = frame.groupby(["customer_id", "day"], sort=True)["amount"].sum().reset_index()
    return rfm_from_daily(daily, as_of=as_of, time_unit_days=time_unit_days)


def _days(column: pd.Series) -> np.ndarray:
    # Text dates may mix "2024-01-08" and "2024-01-08 18:30"; only the day is kept.
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.to_numpy().astype("datetime64[D]")
    return pd.to_datetime(column, format="ISO8601").to_numpy().astype("datetime64[D]")


def rfm_from_daily(
    daily: pd.DataFrame, *, as_of: date, time_unit_days: float = 7.0
) -> pd.DataFrame:
    """``rfm_summary`` for rows already one per customer and day (columns customer_id, day,
    amount), sorted by customer then day, none after ``as_of``."""
    days = daily["day"].to_numpy().astype("datetime64[D]").astype(np.int64)
    customers = daily["customer_id"].to_numpy()
    amounts = daily["amount"].to_numpy(dtype=np.float64)
    if len(customers) == 0:
        return pd.DataFrame(
            columns=["x", "t_x", "T", "monetary", "first_day", "last_day"],
            index=pd.Index([], name="customer_id"),
        )
    starts = np.flatnonzero(np.r_[True, customers[1:] != customers[:-1]])
    counts = np.diff(np.r_[starts, len(customers)])
    first = days[starts]
    last = days[starts + counts - 1]
    total = np.add.reduceat(amounts, starts)
    x = counts - 1
    repeat_value = total - amounts[starts]
    monetary = np.divide(repeat_value, x, out=np.zeros(len(x)), where=x > 0)
    as_of_day = np.datetime64(as_of, "D").astype(np.int64)
    return pd.DataFrame(
        {
            "x": x.astype(np.int64),
            "t_x": (last - first) / time_unit_days,
            "T": (as_of_day - first) / time_unit_days,
            "monetary": monetary,
            "first_day": first.astype("datetime64[D]"),
            "last_day": last.astype("datetime64[D]"),
        },
        index=pd.Index(customers[starts], name="customer_id"),
    )


def rfm_from_totals(
    totals: pd.DataFrame, *, as_of: date, time_unit_days: float = 7.0
) -> pd.DataFrame:
    """``rfm_summary`` from per-customer totals already summed by day in the database:
    columns customer_id, days (distinct purchase days), first_day, last_day, total (all
    purchase days) and first_total (the first day's purchases)."""
    first = totals["first_day"].to_numpy().astype("datetime64[D]")
    last = totals["last_day"].to_numpy().astype("datetime64[D]")
    x = totals["days"].to_numpy(dtype=np.int64) - 1
    repeat_value = totals["total"].to_numpy(dtype=np.float64) - totals["first_total"].to_numpy(
        dtype=np.float64
    )
    monetary = np.divide(repeat_value, x, out=np.zeros(len(x)), where=x > 0)
    as_of_day = np.datetime64(as_of, "D")
    return pd.DataFrame(
        {
            "x": x,
            "t_x": (last - first).astype(np.int64) / time_unit_days,
            "T": (as_of_day - first).astype(np.int64) / time_unit_days,
            "monetary": monetary,
            "first_day": first,
            "last_day": last,
        },
        index=pd.Index(totals["customer_id"].to_numpy(np.int64), name="customer_id"),
    )


def _unique_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of the given columns and how many times each occurs."""
    # A hash group-by: np.unique(axis=0) sorts the rows and takes 20x longer at 1M rows.
    frame = pd.DataFrame({i: np.asarray(c, dtype=np.float64) for i, c in enumerate(columns)})
    counts = frame.groupby(list(frame.columns), sort=False).size()
    unique = counts.index.to_frame(index=False).to_numpy(np.float64)
    return [unique[:, i] for i in range(unique.shape[1])], counts.to_numpy(np.float64)


# What an objective gives where the likelihood is not a finite number: far above any real
# value, so that a line search backs away from it.
NOT_FINITE = 1e300


@dataclass(frozen=True)
class Objective:
    """What a fit minimises: the negative log-likelihood of the customers and its gradient as
    a function of the log-parameters, and how many customers it counts."""

    negative: Callable[[np.ndarray], tuple[float, np.ndarray]]
    customers: int


# Row-wise terms are summed over blocks of this many rows (64 KB per column): temporaries
# as long as the 350,000 distinct rows of a million customers are handed back to the
# system and faulted in again at every evaluation, which cost 4x the arithmetic; blocks
# this small are reused from the heap and stay in the cache.
ROWS_PER_BLOCK = 8192


def _block_sums(
    terms: Callable[..., np.ndarray], columns: tuple[np.ndarray, ...], *args
) -> np.ndarray:
    total = 0.0
    # At least once: no rows sum to the terms of no rows (zeros), not to a bare 0.
    for start in range(0, max(len(columns[0]), 1), ROWS_PER_BLOCK):
        total = total + terms(*(c[start : start + ROWS_PER_BLOCK] for c in columns), *args)
    return total


def _at_bound(names: tuple[str, ...], log_params: np.ndarray) -> tuple[str, ...]:
    return tuple(n for n, v in zip(names, log_params, strict=True) if abs(v) > LOG_BOUND - 1e-3)


# A start is the last answer on nearly the same customers: a search from it that ends
# more than this factor away in any parameter went somewhere else (BG/NBD's likelihood has
# ridges along which a and b grow without end, and a start high on one converges there),
# or the customers changed a lot; either way the search from zeros decides.
START_MAX_MOVE = 2.0


def _minimise(
    objective: Objective, *, names: tuple[str, ...], start: tuple[float, ...] | None
) -> tuple[optimize.OptimizeResult, str, int]:
    """L-BFGS-B on the log-parameters from ``start``, or from zeros when none is given or
    when the search from it does not converge, ends on a bound or moves more than
    START_MAX_MOVE: a start saves evaluations, the answer does not depend on it. Returns
    the result, where it began (BgNbd.started_from) and the evaluations of both searches."""
    spent = 0
    if start is not None:
        begin = np.asarray(start, dtype=np.float64)
        if begin.shape == (len(names),) and np.isfinite(begin).all() and (begin > 0).all():
            begin = np.clip(np.log(begin), -LOG_BOUND, LOG_BOUND)
            result = _lbfgsb(objective, begin)
            near = np.abs(result.x - begin).max() <= np.log(START_MAX_MOVE)
            if _settled(result, objective) and near and not _at_bound(names, result.x):
                return result, "start", result.nfev
            spent = result.nfev
    result = _lbfgsb(objective, np.zeros(len(names)))
    return result, "zeros" if start is None else "zeros instead", spent + result.nfev


# L-BFGS-B stops when an iteration gains less than FIT_FTOL of the value or when no
# gradient component (per customer) exceeds FIT_GTOL. Chosen by measurement on CDNOW (in
# weeks and in days), the UCI retail data and a synthetic million: searches from zeros,
# from the optimum, from 5% off it in every direction and from a fit on 90% of the customers
# end within 1e-5 of each other wherever the data pin the parameters down (with scipy's
# defaults, up to 7e-3 apart). Tighter, more searches end where rounding stops them.
FIT_FTOL = 1e-13
FIT_GTOL = 1e-7
# A search whose line search can make no more progress (L-BFGS-B's status 2: rounding, near
# the optimum) has settled when no gradient component per customer exceeds this. A few
# hundred customers whose order values put p on its bound stop at 1e-6 (q's component).
SETTLED_GTOL = 100 * FIT_GTOL
# Or when no step downhill lowers the mean likelihood by more than its rounding: with p
# far out on its bound the gradient itself is off by rounding (q's component 1.9e-5 on one
# machine, within SETTLED_GTOL on another, for the same 160 customers), while every step of
# these sizes raises the likelihood (by 1e-9 and more at 1e-4). A search short of the
# minimum by a gradient of 1e-5 would gain 1e-7 at the largest step, far above rounding.
SETTLED_PROBE_STEPS = (1e-4, 1e-3, 1e-2)
SETTLED_PROBE_ROUNDING = 1e-10


def _settled(result: optimize.OptimizeResult, objective: Objective) -> bool:
    """Whether a search ended at a minimum: converged, or stopped by rounding where the
    gradient is flat already or no step downhill lowers the likelihood; never where the
    likelihood is not a number."""
    if result.fun * max(objective.customers, 1) >= NOT_FINITE:
        return False
    if result.success:
        return True
    if result.status != 2:
        return False
    return np.abs(result.jac).max() <= SETTLED_GTOL or _no_step_downhill(result, objective)


def _no_step_downhill(result: optimize.OptimizeResult, objective: Objective) -> bool:
    """Whether steps of SETTLED_PROBE_STEPS along the negative gradient (kept within the
    bounds) all fail to lower the mean likelihood by more than SETTLED_PROBE_ROUNDING."""
    direction = -np.asarray(result.jac, dtype=np.float64)
    # A parameter on its bound whose gradient points outward stays where it is.
    outward = ((result.x >= LOG_BOUND - 1e-9) & (direction > 0)) | (
        (result.x <= -LOG_BOUND + 1e-9) & (direction < 0)
    )
    direction[outward] = 0.0
    norm = np.linalg.norm(direction)
    if not np.isfinite(norm) or norm == 0.0:
        return True
    direction /= norm
    customers = max(objective.customers, 1)
    for step in SETTLED_PROBE_STEPS:
        probe = np.clip(result.x + step * direction, -LOG_BOUND, LOG_BOUND)
        value = objective.negative(probe)[0] / customers
        if value < result.fun - SETTLED_PROBE_ROUNDING * max(1.0, abs(result.fun)):
            return False
    return True


def _fit_outcome(
    result: optimize.OptimizeResult,
    objective: Objective,
    names: tuple[str, ...],
    started: float,
    evaluations: int,
    started_from: str,
) -> dict:
    """What BgNbd and GammaGamma record of their search alike, beside the parameters."""
    return {
        "log_likelihood": float(-result.fun * objective.customers),
        "converged": _settled(result, objective),
        "at_bound": _at_bound(names, result.x),
        "customers": objective.customers,
        "fit_seconds": time.perf_counter() - started,
        "evaluations": evaluations,
        "started_from": started_from,
    }


def _lbfgsb(objective: Objective, begin: np.ndarray) -> optimize.OptimizeResult:
    """The search, on the mean per customer: FIT_GTOL is absolute, and so means the same for
    a thousand customers and a million. ``fun`` is the mean at the answer."""
    customers = max(objective.customers, 1)

    def mean(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = objective.negative(log_params)
        return value / customers, gradient / customers

    return optimize.minimize(
        mean,
        x0=begin,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * len(begin),
        options={"maxiter": 2000, "ftol": FIT_FTOL, "gtol": FIT_GTOL},
    )


def bgnbd_log_likelihood(
    params: tuple[float, float, float, float],
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
) -> np.ndarray:
    """Per-customer log-likelihood of the BG/NBD model (FHL 2005, equation 6)."""
    r, alpha, a, b = params
    x = np.asarray(x, dtype=np.float64)
    # a1 and a2 depend on x alone: computed once per distinct x and spread back.
    xs, x_code = np.unique(x, return_inverse=True)
    a1 = special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.gammaln(a + b) + special.gammaln(b + xs) - special.gammaln(b)
    a2 -= special.gammaln(a + b + xs)
    a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    a4 = np.full_like(a3, -np.inf)
    a4[repeat] = (
        np.log(a)
        - np.log(b + x[repeat] - 1)
        - (r + x[repeat]) * np.log(alpha + np.asarray(t_x)[repeat])
    )
    return (a1 + a2)[x_code] + np.logaddexp(a3, a4)


def bgnbd_objective(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> Objective:
    """The negative BG/NBD log-likelihood of these customers and its gradient in (log r,
    log alpha, log a, log b): what bgnbd_fit minimises.

    Computed over the distinct (x, t_x, T) rows weighted by their counts: the terms of x
    alone once per distinct x (a few hundred at most), the logs of the times once per
    distinct time (days in the time unit); only what needs x, t_x and T together is
    computed row by row.
    """
    (ux, utx, uT), weights = _unique_rows(x, t_x, T)
    xs, x_code = np.unique(ux, return_inverse=True)
    ts, t_code = np.unique(utx, return_inverse=True)
    Ts, T_code = np.unique(uT, return_inverse=True)
    per_x = np.bincount(x_code, weights=weights, minlength=len(xs))
    repeat = xs > 0
    rows = (ux, weights, x_code, t_code, T_code)

    def negative(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.exp(log_params)
        r, alpha, a, b = theta
        # a1 + a2 (FHL's equation 6) and their derivatives, per distinct x.
        digamma_abx = special.digamma(a + b + xs)
        value = per_x @ (
            special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha)
            + special.gammaln(a + b) + special.gammaln(b + xs) - special.gammaln(b)
            - special.gammaln(a + b + xs)
        )  # fmt: skip
        gradient = np.array(
            [
                per_x @ (special.digamma(r + xs) - special.digamma(r) + np.log(alpha)),
                per_x.sum() * r / alpha,
                per_x @ (special.digamma(a + b) - digamma_abx),
                per_x @ (
                    special.digamma(a + b) + special.digamma(b + xs) - special.digamma(b)
                    - digamma_abx
                ),
            ]
        )  # fmt: skip
        # a4 - a3 but for its time term, per distinct x: -inf for x = 0, who cannot have
        # dropped out, so that log(e^a3 + e^a4) is a3 for them.
        lead = np.full(len(xs), -np.inf)
        lead[repeat] = np.log(a) - np.log(b + xs[repeat] - 1)
        inverse_b = np.zeros(len(xs))
        inverse_b[repeat] = 1 / (b + xs[repeat] - 1)
        times = (np.log(alpha + ts), np.log(alpha + Ts), 1 / (alpha + ts), 1 / (alpha + Ts))
        sums = _block_sums(_bgnbd_row_terms, rows, r, lead, inverse_b, *times)
        value += sums[0]
        if not np.isfinite(value):
            return NOT_FINITE, np.zeros(4)
        gradient += sums[1:] * (1, 1, 1 / a, 1)
        # d/d log theta = theta d/d theta.
        return float(-value), -gradient * theta

    return Objective(negative, int(weights.sum()))


def _bgnbd_row_terms(
    x, weights, x_code, t_code, T_code, r, lead, inverse_b, log_t, log_T, inverse_t, inverse_T
) -> np.ndarray:
    """Sums over these rows of weight x log(e^a3 + e^a4) and of its derivatives in r, alpha,
    a (times a) and b."""
    log_T, inverse_T = log_T[T_code], inverse_T[T_code]
    ratio = log_T - log_t[t_code]
    rx = r + x
    gap = lead[x_code] + rx * ratio  # a4 - a3
    # log(e^a3 + e^a4) = a3 + log(1 + e^gap), whose derivative in gap is the dropout term's
    # share 1 / (1 + e^-gap); both from e^-|gap|, which cannot overflow.
    small = np.exp(-np.abs(gap))
    softplus = np.maximum(gap, 0) + np.log1p(small)
    share = np.where(gap >= 0, 1.0, small) / (1 + small)
    weighted_share = weights * share
    return np.array(
        [
            weights @ (softplus - rx * log_T),
            weighted_share @ ratio - weights @ log_T,
            -(weights * rx) @ (inverse_T + share * (inverse_t[t_code] - inverse_T)),
            weighted_share.sum(),
            -(weighted_share @ inverse_b[x_code]),
        ]
    )


def bgnbd_fit(
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    *,
    start: tuple[float, float, float, float] | None = None,
) -> BgNbd:
    """Maximum-likelihood BG/NBD fit, on log-parameters, over the distinct (x, t_x, T) rows
    weighted by their counts (customers of one cohort share few distinct rows, so a million
    customers cost about as much as their distinct rows).

    ``start`` (r, alpha, a, b), such as the previous fit's parameters, saves most of the
    search when the customers have changed little; the answer does not depend on it (see
    _minimise).
    """
    started = time.perf_counter()
    objective = bgnbd_objective(x, t_x, T)
    names = ("r", "alpha", "a", "b")
    result, started_from, evaluations = _minimise(objective, names=names, start=start)
    r, alpha, a, b = (float(v) for v in np.exp(result.x))
    return BgNbd(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        **_fit_outcome(result, objective, names, started, evaluations, started_from),
    )


def bgnbd_p_alive(
    model: BgNbd,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
) -> np.ndarray:
    """P(still a customer | x, t_x, T) (FHL 2005, equation 11). 1 for x = 0: the model
    lets customers drop out only right after a purchase."""
    x = np.asarray(x, dtype=np.float64)
    ratio = np.log(model.alpha + T) - np.log(model.alpha + t_x)
    log_odds = np.log(model.a) - np.log(np.maximum(model.b + x - 1, 1e-300)) + (model.r + x) * ratio
    return np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_odds, 700))), 1.0)


def bgnbd_expected_purchases(
    model: BgNbd,
    t: float | np.ndarray,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
) -> np.ndarray:
    """E[purchases in the next t | x, t_x, T] (FHL 2005, equation 10)."""
    x = np.asarray(x, dtype=np.float64)
    return _expected_if_alive(model, t, x, T) * bgnbd_p_alive(model, x, t_x, T)


def _expected_if_alive(model: BgNbd, t: float | np.ndarray, x: np.ndarray, T) -> np.ndarray:
    """Equation 10 without its chance of being alive: it depends on x and T only, not t_x."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    t = np.asarray(t, dtype=np.float64)
    z = t / (alpha + T + t)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    head = (a + b + x - 1) / (a - 1)
    body = 1 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp
    return head * body


def bgnbd_expected_purchases_population(
    model: BgNbd,
    t: float | np.ndarray,
) -> np.ndarray:
    """E[X(t)]: purchases a new customer makes in their first t after the first purchase
    (repeat purchases only; FHL 2005, equation 7)."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    t = np.asarray(t, dtype=np.float64)
    hyp = special.hyp2f1(r, b, a + b - 1, t / (alpha + t))
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp)


def gamma_gamma_log_likelihood(
    params: tuple[float, float, float], x: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """Per-customer log-likelihood of the mean repeat value m of x transactions (Fader &
    Hardie 2013, equation 5), for x >= 1."""
    p, q, v = params
    x = np.asarray(x, dtype=np.float64)
    px = p * x
    return (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(v + m * x)
    )


def gamma_gamma_objective(x: np.ndarray, monetary: np.ndarray) -> Objective:
    """The negative Gamma-Gamma log-likelihood of the customers with x >= 1 and a positive
    mean, and its gradient in (log p, log q, log gamma): what gamma_gamma_fit minimises.

    Over the distinct (x, mean) rows weighted by their counts: the gamma functions once per
    distinct x, the terms of the data alone once, and only log(gamma + m x) row by row.
    """
    x = np.asarray(x, dtype=np.float64)
    monetary = np.asarray(monetary, dtype=np.float64)
    keep = (x >= 1) & (monetary > 0)
    (ux, um), weights = _unique_rows(x[keep], monetary[keep])
    xs, x_code = np.unique(ux, return_inverse=True)
    per_x = np.bincount(x_code, weights=weights, minlength=len(xs))
    customers = weights.sum()
    # (px - 1) log m + px log x = p x (log m + log x) - log m: two sums, the same every time.
    x_log_mx = (weights * ux) @ (np.log(um) + np.log(ux))
    log_m = weights @ np.log(um)
    rows = (um * ux, weights, weights * ux)

    def negative(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.exp(log_params)
        p, q, v = theta
        px = p * xs
        log_v = np.log(v)
        digamma_pxq = special.digamma(px + q)
        log_total, x_log_total, inverse, x_inverse = _block_sums(_gamma_gamma_row_terms, rows, v)
        value = (
            per_x @ (special.gammaln(px + q) - special.gammaln(px))
            + customers * (q * log_v - special.gammaln(q))
            + p * x_log_mx - log_m
            - p * x_log_total - q * log_total
        )  # fmt: skip
        if not np.isfinite(value):
            return NOT_FINITE, np.zeros(3)
        gradient = np.array(
            [
                per_x @ (xs * (digamma_pxq - special.digamma(px))) + x_log_mx - x_log_total,
                per_x @ digamma_pxq + customers * (log_v - special.digamma(q)) - log_total,
                customers * q / v - p * x_inverse - q * inverse,
            ]
        )
        # d/d log theta = theta d/d theta.
        return float(-value), -gradient * theta

    return Objective(negative, int(customers))


def _gamma_gamma_row_terms(total, weights, weighted_x, v) -> np.ndarray:
    """Sums over these rows of weight x log(gamma + m x) and weight / (gamma + m x), and of
    the same times x."""
    log_total = np.log(v + total)
    inverse = 1 / (v + total)
    return np.array(
        [weights @ log_total, weighted_x @ log_total, weights @ inverse, weighted_x @ inverse]
    )


def gamma_gamma_fit(
    x: np.ndarray,
    monetary: np.ndarray,
    *,
    start: tuple[float, float, float] | None = None,
) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma fit on the customers with x >= 1 and a positive mean,
    from ``start`` (p, q, gamma) if given, as bgnbd_fit."""
    started = time.perf_counter()
    objective = gamma_gamma_objective(x, monetary)
    names = ("p", "q", "gamma")
    result, started_from, evaluations = _minimise(objective, names=names, start=start)
    p, q, v = (float(v) for v in np.exp(result.x))
    return GammaGamma(
        p=p,
        q=q,
        gamma=v,
        **_fit_outcome(result, objective, names, started, evaluations, started_from),
    )


def gamma_gamma_expected_value(
    model: GammaGamma, x: np.ndarray, monetary: np.ndarray
) -> np.ndarray:
    """E[mean transaction value | x, m_x] (Fader & Hardie 2013, equation 6): a weighted mean
    of the population mean and the customer's own, more their own the more they bought.
    Customers with no repeat purchase get the population mean."""
    p, q, v = model.p, model.q, model.gamma
    x = np.asarray(x, dtype=np.float64)
    monetary = np.where(x > 0, np.asarray(monetary, dtype=np.float64), 0.0)
    return p * (v + x * monetary) / (p * x + q - 1)


def discounted_purchases(
    bgnbd: BgNbd,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    *,
    time_unit_days: float,
    months: int = 12,
    monthly_discount: float = 0.01,
) -> np.ndarray:
    """The sum over the next ``months`` months m of (expected purchases in month m) / (1 +
    rate)^m: times the expected value of a purchase, the customer's value."""
    x = np.asarray(x, dtype=np.float64)
    alive = bgnbd_p_alive(bgnbd, x, t_x, T)
    return _discounted(
        lambda t: _expected_if_alive(bgnbd, t, x, T) * alive,
        month=DAYS_PER_MONTH / time_unit_days,
        months=months,
        monthly_discount=monthly_discount,
    )


def _discounted(
    expected: Callable[[float], np.ndarray], *, month: float, months: int, monthly_discount: float
) -> np.ndarray:
    """The sum over months m of (expected(m months) - expected(m - 1 months)) / (1 +
    rate)^m, ``expected`` giving the purchases expected within a time t."""
    total = previous = 0.0
    for m in range(1, months + 1):
        cumulative = expected(m * month)
        total = total + (cumulative - previous) / (1 + monthly_discount) ** m
        previous = cumulative
    return total


def customer_value(
    bgnbd: BgNbd,
    gg: GammaGamma,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    monetary: np.ndarray,
    *,
    time_unit_days: float,
    months: int = 12,
    monthly_discount: float = 0.01,
) -> np.ndarray:
    """Expected value of the next ``months`` months: the sum over months m of (expected
    purchases in month m) x (expected value of a purchase) / (1 + rate)^m."""
    purchases = discounted_purchases(
        bgnbd, x, t_x, T, time_unit_days=time_unit_days, months=months,
        monthly_discount=monthly_discount,
    )  # fmt: skip
    return purchases * gamma_gamma_expected_value(gg, x, monetary)


def prediction_scores(
    summary: pd.DataFrame,
    *,
    bgnbd: BgNbd,
    gg: GammaGamma,
    time_unit_days: float,
    monthly_discount: float,
) -> pd.DataFrame:
    """Every customer's predicted figures (the CustomerPrediction columns) from their
    summary (rfm_summary) and the fitted models."""
    x, t_x, T = (summary[c].to_numpy(np.float64) for c in ("x", "t_x", "T"))
    monetary = summary["monetary"].to_numpy(np.float64)
    # The purchase figures depend on (x, t_x, T) only: computed once per distinct row (a
    # tenth of the customers at 1M) and spread back, the hypergeometric calls cost 10x less.
    codes = (
        pd.DataFrame({"x": x, "t_x": t_x, "T": T}).groupby(["x", "t_x", "T"], sort=False).ngroup()
    ).to_numpy()
    first = np.unique(codes, return_index=True)[1]
    ux, utx, uT = x[first], t_x[first], T[first]
    # The hypergeometric part depends on (x, T) alone, not t_x: once per distinct pair,
    # fewer still (the same floats as bgnbd_expected_purchases, in the same order).
    pairs = pd.DataFrame({"x": ux, "T": uT}).groupby(["x", "T"], sort=False).ngroup().to_numpy()
    pair_first = np.unique(pairs, return_index=True)[1]
    px, pT = ux[pair_first], uT[pair_first]
    distinct_alive = bgnbd_p_alive(bgnbd, ux, utx, uT)

    def expected(t: float) -> np.ndarray:
        return _expected_if_alive(bgnbd, t, px, pT)[pairs] * distinct_alive

    alive = distinct_alive[codes]
    scores = {"p_alive": alive}
    for days in (30, 90, 365):
        scores[f"expected_purchases_{days}d"] = expected(days / time_unit_days)[codes]
    purchases = _discounted(
        expected,
        month=DAYS_PER_MONTH / time_unit_days,
        months=12,
        monthly_discount=monthly_discount,
    )[codes]
    scores["expected_order_value"] = gamma_gamma_expected_value(gg, x, monetary)
    value = purchases * scores["expected_order_value"]
    scores["value_12m"] = value
    # value_12m already weighs the year by the chance they are still a customer; divided by
    # it, it is the year's worth if they are; times (1 - p_alive), what may be lost.
    scores["value_at_risk"] = np.divide(
        value * (1 - alive), alive, out=np.zeros_like(value), where=alive > 0
    )
    return pd.DataFrame(scores, index=summary.index)


def data_problem(*, repeat_customers: int, min_repeat_customers: int | None = None) -> str:
    """Why there are too few customers to fit on, in plain words; "" when there are enough."""
    if min_repeat_customers is None:
        min_repeat_customers = MIN_REPEAT_CUSTOMERS
    if repeat_customers < min_repeat_customers:
        return (
            f"Only {repeat_customers} customers have bought more than once; predictions need "
            f"at least {min_repeat_customers} to be reliable."
        )
    return ""


def fit_problem(
    bgnbd: BgNbd | None,
    gg: GammaGamma | None,
    *,
    repeat_customers: int,
    time_unit_days: float,
    min_repeat_customers: int | None = None,
) -> str:
    """Why the fits must not be trusted, in plain words; "" when they can be."""
    if reason := data_problem(
        repeat_customers=repeat_customers, min_repeat_customers=min_repeat_customers
    ):
        return reason
    if bgnbd is None or gg is None:
        return "The models were not fitted."
    if not bgnbd.converged:
        return "The purchase model did not settle on an answer (no convergence)."
    if not gg.converged:
        return "The order value model did not settle on an answer (no convergence)."
    if bgnbd.at_bound:
        return (
            "The purchase model ran to the edge of its range ("
            + ", ".join(bgnbd.at_bound)
            + "): the purchases do not pin it down."
        )
    # p at its upper edge is a limit, not a failure: when each customer spends much the same
    # every time, p grows without end while p x gamma (the mean order value of the
    # population) stays put, and so does every expected order value.
    gg_bound = [name for name in gg.at_bound if not (name == "p" and gg.p > 1)]
    if gg_bound:
        return (
            "The order value model ran to the edge of its range ("
            + ", ".join(gg_bound)
            + "): the amounts do not pin it down."
        )
    if gg.q <= 1:
        # The expected value p(gamma + x m)/(p x + q - 1) is infinite or negative for x = 0.
        return "The order value model says the average order has no finite value."
    year = 365.25 / time_unit_days
    per_year = float(bgnbd_expected_purchases_population(bgnbd, year))
    if not np.isfinite(per_year) or per_year < 0 or per_year > MAX_EXPECTED_PER_YEAR:
        return "The purchase model predicts an implausible number of purchases."
    return ""
