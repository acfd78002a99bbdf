"""BG/NBD and Gamma-Gamma reproduce the published CDNOW figures (pure, no database)."""

import itertools
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from segmentation import clv, clv_holdout, clv_words

CDNOW = Path(__file__).resolve().parent.parent / "fixtures" / "cdnow_sample_purchases.csv"
CALIBRATION_END = date(1997, 9, 30)


def significant(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    frame = pd.read_csv(CDNOW)
    return frame.rename(columns={"purchased_at": "date"})


@pytest.fixture(scope="module")
def summary(cdnow) -> pd.DataFrame:
    return clv.rfm_summary(cdnow, as_of=CALIBRATION_END, time_unit_days=7)


def purchases(rows: list[tuple[int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"])


def test_same_day_purchases_count_as_one_transaction_with_their_amounts_summed():
    rows = purchases(
        [
            (1, "2024-01-01", 10.0),
            (1, "2024-01-08", 20.0),
            (1, "2024-01-08 18:30", 5.0),
            (1, "2024-01-15", 15.0),
        ]
    )
    row = clv.rfm_summary(rows, as_of=date(2024, 1, 29), time_unit_days=7).loc[1]
    assert row["x"] == 2
    assert row["monetary"] == pytest.approx((25.0 + 15.0) / 2)


def test_summary_measures_t_x_and_t_from_the_first_purchase_in_time_units():
    rows = purchases([(7, "2024-01-01", 10.0), (7, "2024-01-15", 30.0)])
    row = clv.rfm_summary(rows, as_of=date(2024, 1, 29), time_unit_days=7).loc[7]
    assert (row["x"], row["t_x"], row["T"]) == (1, 2.0, 4.0)
    days = clv.rfm_summary(rows, as_of=date(2024, 1, 29), time_unit_days=1).loc[7]
    assert (days["t_x"], days["T"]) == (14.0, 28.0)


def test_purchases_after_the_as_of_date_are_left_out_and_purchases_on_it_count():
    rows = purchases([(1, "2024-01-01", 10.0), (1, "2024-01-10", 20.0), (1, "2024-01-11", 40.0)])
    row = clv.rfm_summary(rows, as_of=date(2024, 1, 10), time_unit_days=1).loc[1]
    assert (row["x"], row["t_x"], row["T"], row["monetary"]) == (1, 9.0, 9.0, 20.0)


def test_one_time_buyers_have_no_repeat_value_and_customers_after_the_as_of_date_are_absent():
    rows = purchases([(1, "2024-01-01", 10.0), (2, "2024-02-01", 99.0)])
    summary = clv.rfm_summary(rows, as_of=date(2024, 1, 20), time_unit_days=7)
    assert list(summary.index) == [1]
    assert (summary.loc[1, "x"], summary.loc[1, "t_x"], summary.loc[1, "monetary"]) == (0, 0, 0)


def test_cdnow_summary_has_the_papers_customers_and_repeat_purchases(summary):
    assert len(summary) == 2357
    assert (summary["x"] > 0).sum() == 946
    assert summary["x"].sum() == 2457
    # Every customer's first purchase is in the first quarter of 1997: T spans 27 to 39 weeks.
    assert summary["T"].min() == pytest.approx(189 / 7)
    assert summary["T"].max() == pytest.approx(272 / 7)


def test_bgnbd_fit_reproduces_the_papers_parameters_on_cdnow(summary):
    model = clv.bgnbd_fit(summary["x"], summary["t_x"], summary["T"])
    assert model.converged and model.at_bound == ()
    assert [significant(v) for v in (model.r, model.alpha, model.a, model.b)] == [
        0.243,
        4.41,
        0.793,
        2.43,
    ]
    # The paper's table: r 0.243, alpha 4.414, a 0.793, b 2.426, LL -9582.4.
    assert model.alpha == pytest.approx(4.414, abs=0.001)
    assert model.b == pytest.approx(2.426, abs=0.001)
    assert model.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    assert model.customers == 2357


def test_gamma_gamma_fit_reproduces_the_published_parameters_on_cdnow(summary):
    model = clv.gamma_gamma_fit(summary["x"], summary["monetary"])
    assert model.converged and model.customers == 946
    assert [significant(v) for v in (model.p, model.q, model.gamma)] == [6.25, 3.74, 15.4]
    assert model.gamma == pytest.approx(15.44, abs=0.01)


def test_p_alive_falls_with_time_since_the_last_purchase_and_is_one_without_repeats():
    model = clv.BgNbd(0.243, 4.414, 0.793, 2.426, 0, True, (), 0, 0)
    alive = clv.bgnbd_p_alive(model, np.array([0, 3, 3]), np.array([0, 30, 10]), np.full(3, 38.0))
    assert alive[0] == 1.0
    assert 1 > alive[1] > alive[2] > 0


def test_conditional_expectation_matches_the_papers_example():
    # FHL (2005) section 5: x = 2, t_x = 30.43, T = 38.86 expects 1.226 purchases in the
    # next 39 weeks (their Excel figure is 1.226).
    model = clv.BgNbd(0.243, 4.414, 0.793, 2.426, 0, True, (), 0, 0)
    expected = clv.bgnbd_expected_purchases(
        model, 39, np.array([2]), np.array([30.43]), np.array([38.86])
    )
    assert expected[0] == pytest.approx(1.226, abs=0.002)


def test_population_expectation_grows_from_zero_and_bends_down():
    model = clv.BgNbd(0.243, 4.414, 0.793, 2.426, 0, True, (), 0, 0)
    values = clv.bgnbd_expected_purchases_population(model, np.array([0.0, 26, 52, 78]))
    assert values[0] == 0
    steps = np.diff(values)
    assert (steps > 0).all() and steps[1] < steps[0] and steps[2] < steps[1]


def test_expected_order_value_shrinks_a_customers_mean_toward_the_population_mean():
    gg = clv.GammaGamma(6.25, 3.74, 15.44, 0, True, (), 0)
    population_mean = 6.25 * 15.44 / (3.74 - 1)
    one, many = clv.gamma_gamma_expected_value(gg, np.array([1, 20]), np.array([100.0, 100.0]))
    assert population_mean < one < many < 100
    nobody = clv.gamma_gamma_expected_value(gg, np.array([0]), np.array([0.0]))[0]
    assert nobody == pytest.approx(population_mean)


def test_twelve_month_value_is_discounted_monthly_purchases_times_expected_value():
    model = clv.BgNbd(0.243, 4.414, 0.793, 2.426, 0, True, (), 0, 0)
    gg = clv.GammaGamma(6.25, 3.74, 15.44, 0, True, (), 0)
    x, t_x, T, m = np.array([2]), np.array([30.0]), np.array([38.0]), np.array([40.0])
    undiscounted = clv.customer_value(
        model, gg, x, t_x, T, m, time_unit_days=7, monthly_discount=0.0
    )[0]
    year = clv.bgnbd_expected_purchases(model, 365.25 / 7, x, t_x, T)[0]
    assert undiscounted == pytest.approx(year * clv.gamma_gamma_expected_value(gg, x, m)[0])
    discounted = clv.customer_value(model, gg, x, t_x, T, m, time_unit_days=7)[0]
    assert undiscounted / 1.01**12 < discounted < undiscounted / 1.01


def test_cdnow_fits_are_plausible_and_a_small_sample_is_not(summary):
    model = clv.bgnbd_fit(summary["x"], summary["t_x"], summary["T"])
    gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"])
    repeat = int((summary["x"] > 0).sum())
    assert clv.fit_problem(model, gg, repeat_customers=repeat, time_unit_days=7) == ""
    small = summary.iloc[:100]
    reason = clv.fit_problem(
        model, gg, repeat_customers=int((small["x"] > 0).sum()), time_unit_days=7
    )
    assert "bought more than once" in reason


def test_a_fit_at_its_bound_or_not_converged_is_not_trusted():
    gg = clv.GammaGamma(6.25, 3.74, 15.44, 0, True, (), 0)
    bounded = clv.BgNbd(0.2, 4.0, 0.8, 162754.0, 0, True, ("b",), 0, 0)
    assert "edge of its range (b)" in clv.fit_problem(
        bounded, gg, repeat_customers=1000, time_unit_days=7
    )
    stuck = clv.BgNbd(0.2, 4.0, 0.8, 2.4, 0, False, (), 0, 0)
    assert "no convergence" in clv.fit_problem(stuck, gg, repeat_customers=1000, time_unit_days=7)


def test_an_order_value_model_whose_p_grows_without_end_is_a_limit_not_a_failure(summary):
    """When the amounts vary too little to hold p, p runs to its upper edge while p x gamma
    stays put: the expected order values are the limit's (a repeat buyer's own mean, a
    newcomer the population's), so the predictions stand. At the lower edge they do not."""
    model = clv.bgnbd_fit(summary["x"], summary["t_x"], summary["T"])
    repeat = int((summary["x"] > 0).sum())
    edge = np.exp(clv.LOG_BOUND)
    upper = clv.GammaGamma(edge, 2.2, 153.0 / edge, 0, True, ("p",), 0)
    lower = clv.GammaGamma(1 / edge, 2.2, 15.4, 0, True, ("p",), 0)

    assert clv.fit_problem(model, upper, repeat_customers=repeat, time_unit_days=7) == ""
    assert "edge of its range (p)" in clv.fit_problem(
        model, lower, repeat_customers=repeat, time_unit_days=7
    )
    values = clv.gamma_gamma_expected_value(
        upper, np.array([0.0, 1.0, 5.0]), np.array([0.0, 40.0, 186.0])
    )
    # A newcomer: the population's mean, p x gamma / (q - 1); a repeat buyer: their own.
    assert values == pytest.approx([153.0 / 1.2, 40.0, 186.0], rel=1e-3)


def test_holdout_check_tracks_the_actual_repeat_purchases_of_cdnow(cdnow):
    model, check = clv_holdout.holdout_check(
        cdnow, calibration_end=CALIBRATION_END, holdout_end=date(1998, 6, 30)
    )
    assert significant(model.r) == 0.243
    assert check.customers == 2357
    assert check.actual_total == 1882
    # Within 15% in aggregate, as in the paper's cumulative plot (the model runs a little low).
    assert check.predicted_population_total == pytest.approx(check.actual_total, rel=0.15)
    assert check.predicted_total == pytest.approx(check.actual_total, rel=0.15)
    assert list(check.by_x.index) == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert check.by_x["customers"].sum() == 2357
    # More calibration purchases, more expected and more actual: the paper's figure.
    assert check.by_x["predicted"].is_monotonic_increasing
    assert (check.by_x["predicted"] - check.by_x["actual"]).abs().max() < 0.5


def test_prediction_words_speak_plainly_with_the_currency_code():
    words = clv_words.prediction_words(
        p_alive=0.95, expected_purchases_90d=2.2, value_12m=338.0, currency="EUR"
    )
    assert words == (
        "Very likely still a customer — about 2 purchases expected in the next 90 days — "
        "worth about 340\u00a0EUR over the next year"
    )


def test_prediction_words_say_likely_gone_below_even_odds_and_nothing_expected():
    words = clv_words.prediction_words(
        p_alive=0.3, expected_purchases_90d=0.05, value_12m=0.4, currency="USD"
    )
    assert words == (
        "Likely gone — no purchase expected in the next 90 days — little expected over the "
        "next year"
    )
    perhaps = clv_words.prediction_words(
        p_alive=0.55, expected_purchases_90d=0.5, value_12m=1234, currency="GBP"
    )
    assert perhaps == (
        "Perhaps still a customer — perhaps one purchase in the next 90 days — worth about "
        "1,200\u00a0GBP over the next year"
    )


def test_prediction_words_admit_when_there_is_not_enough_data():
    assert (
        clv_words.prediction_words(
            p_alive=None, expected_purchases_90d=None, value_12m=None, currency="EUR"
        )
        == "Not enough data yet to say what this customer will do."
    )
    once = clv_words.prediction_words(
        p_alive=1.0, expected_purchases_90d=0.3, value_12m=20, currency="EUR", repeat_purchases=0
    )
    assert once.startswith("Has bought once so far — perhaps one purchase")


def central_differences(objective: clv.Objective, log_params: np.ndarray) -> np.ndarray:
    # Central, not check_grad's forward differences: those are off by about 1e-4 of the
    # gradient near the optimum, where the gradient is small and the curvature is not.
    step = 1e-5
    return np.array(
        [
            (objective.negative(log_params + e)[0] - objective.negative(log_params - e)[0])
            / (2 * step)
            for e in step * np.eye(len(log_params))
        ]
    )


def relative_gap(model, reference, names) -> float:
    return max(abs(getattr(model, n) / getattr(reference, n) - 1) for n in names)


BGNBD = ("r", "alpha", "a", "b")
GAMMA_GAMMA = ("p", "q", "gamma")


def test_bgnbd_log_likelihood_of_a_one_time_buyer_is_the_chance_of_no_purchase_since():
    # x = 0: no dropout is possible (a4 = -inf), so the likelihood is (alpha / (alpha + T))^r.
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    T = np.array([1.0, 20.0, 38.0])
    ll = clv.bgnbd_log_likelihood((r, alpha, a, b), np.zeros(3), np.zeros(3), T)
    assert ll == pytest.approx(r * np.log(alpha / (alpha + T)), rel=1e-12)


@pytest.mark.parametrize(
    "log_params", [(0.0, 0.0, 0.0, 0.0), (-1.4, 1.5, -0.2, 0.9), (2.0, -3.0, 4.0, -2.0)]
)
def test_bgnbd_objective_is_the_summed_likelihood_and_its_gradient_matches_finite_differences(
    summary, log_params
):
    objective = clv.bgnbd_objective(summary["x"], summary["t_x"], summary["T"])
    log_params = np.array(log_params)
    value, gradient = objective.negative(log_params)
    ll = clv.bgnbd_log_likelihood(np.exp(log_params), summary["x"], summary["t_x"], summary["T"])
    assert value == pytest.approx(-ll.sum(), rel=1e-12)
    assert gradient == pytest.approx(central_differences(objective, log_params), abs=1e-9 * value)


def test_bgnbd_gradient_matches_finite_differences_with_one_time_buyers_alone():
    T = np.array([3.0, 10.0, 10.0, 52.0])
    objective = clv.bgnbd_objective(np.zeros(4), np.zeros(4), T)
    log_params = np.array([-1.0, 1.0, 0.5, 0.5])
    gradient = objective.negative(log_params)[1]
    # a and b do not enter: nobody who never came back can have dropped out.
    assert gradient[2:] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert gradient == pytest.approx(central_differences(objective, log_params), rel=1e-7)


@pytest.mark.parametrize("log_params", [(0.0, 0.0, 0.0), (1.8, 1.3, 2.7), (-1.0, 3.0, 0.5)])
def test_gamma_gamma_objective_is_the_summed_likelihood_and_its_gradient_matches(
    summary, log_params
):
    objective = clv.gamma_gamma_objective(summary["x"], summary["monetary"])
    log_params = np.array(log_params)
    value, gradient = objective.negative(log_params)
    buyers = summary[(summary["x"] > 0) & (summary["monetary"] > 0)]
    ll = clv.gamma_gamma_log_likelihood(np.exp(log_params), buyers["x"], buyers["monetary"])
    assert value == pytest.approx(-ll.sum(), rel=1e-12)
    assert gradient == pytest.approx(central_differences(objective, log_params), abs=1e-9 * value)


def test_fits_from_zeros_say_so_and_count_their_evaluations(summary):
    model = clv.bgnbd_fit(summary["x"], summary["t_x"], summary["T"])
    gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"])
    assert model.started_from == gg.started_from == "zeros"
    assert model.evaluations > 1 and gg.evaluations > 1
    assert gg.fit_seconds > 0


def test_fits_started_at_their_optimum_stop_there_at_once(summary):
    columns = summary["x"], summary["t_x"], summary["T"]
    cold = clv.bgnbd_fit(*columns)
    warm = clv.bgnbd_fit(*columns, start=(cold.r, cold.alpha, cold.a, cold.b))
    assert warm.started_from == "start" and warm.converged and warm.at_bound == ()
    assert relative_gap(warm, cold, BGNBD) < 1e-4
    assert warm.evaluations <= 2 < cold.evaluations
    cold_gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"])
    start = (cold_gg.p, cold_gg.q, cold_gg.gamma)
    warm_gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"], start=start)
    assert warm_gg.started_from == "start" and relative_gap(warm_gg, cold_gg, GAMMA_GAMMA) < 1e-4
    assert warm_gg.evaluations <= 2 < cold_gg.evaluations


def five_percent_off(values: tuple[float, ...]) -> list[tuple[float, ...]]:
    """The values 5% higher or lower, in every combination."""
    return [
        tuple(v * (1 + 0.05 * sign) for v, sign in zip(values, signs, strict=True))
        for signs in itertools.product((-1, 1), repeat=len(values))
    ]


def test_fits_started_five_percent_off_reach_the_same_answer_in_fewer_evaluations(summary):
    # Fewer on the median, not every time: from some directions L-BFGS-B needs as many
    # evaluations as from zeros (its first steps learn the curvature), or more.
    columns = summary["x"], summary["t_x"], summary["T"]
    cold = clv.bgnbd_fit(*columns)
    warm = [
        clv.bgnbd_fit(*columns, start=s)
        for s in five_percent_off((cold.r, cold.alpha, cold.a, cold.b))
    ]
    assert all(w.started_from == "start" for w in warm)
    assert max(relative_gap(w, cold, BGNBD) for w in warm) < 1e-4
    assert np.median([w.evaluations for w in warm]) < cold.evaluations
    cold_gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"])
    warm_gg = [
        clv.gamma_gamma_fit(summary["x"], summary["monetary"], start=s)
        for s in five_percent_off((cold_gg.p, cold_gg.q, cold_gg.gamma))
    ]
    assert all(w.started_from == "start" for w in warm_gg)
    assert max(relative_gap(w, cold_gg, GAMMA_GAMMA) for w in warm_gg) < 1e-4
    assert np.median([w.evaluations for w in warm_gg]) < cold_gg.evaluations


def test_the_last_fit_on_fewer_customers_is_a_start_that_reaches_todays_answer(summary):
    earlier = summary.sample(frac=0.9, random_state=1)
    previous = clv.bgnbd_fit(earlier["x"], earlier["t_x"], earlier["T"])
    previous_gg = clv.gamma_gamma_fit(earlier["x"], earlier["monetary"])
    columns = summary["x"], summary["t_x"], summary["T"]
    cold = clv.bgnbd_fit(*columns)
    warm = clv.bgnbd_fit(*columns, start=(previous.r, previous.alpha, previous.a, previous.b))
    assert relative_gap(previous, cold, BGNBD) > 0.01  # a start, not the answer
    assert warm.started_from == "start" and relative_gap(warm, cold, BGNBD) < 1e-4
    assert warm.evaluations < cold.evaluations
    cold_gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"])
    start = (previous_gg.p, previous_gg.q, previous_gg.gamma)
    warm_gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"], start=start)
    assert warm_gg.started_from == "start" and relative_gap(warm_gg, cold_gg, GAMMA_GAMMA) < 1e-4
    assert warm_gg.evaluations < cold_gg.evaluations


ABSURD_STARTS = [
    pytest.param(np.exp(clv.LOG_BOUND), id="upper bounds"),
    pytest.param(np.exp(-clv.LOG_BOUND), id="lower bounds"),
    pytest.param(1e30, id="beyond the bounds"),
    pytest.param(0.0, id="zero"),
    pytest.param(-1.0, id="negative"),
    pytest.param(np.nan, id="not a number"),
]


@pytest.mark.parametrize("value", ABSURD_STARTS)
def test_an_absurd_start_gives_the_answer_from_zeros(summary, value):
    # From every parameter at its upper bound, BG/NBD's search converges far up the ridge
    # where a and b grow together (a ~ 9,000, log-likelihood -9603.6 against -9582.4).
    columns = summary["x"], summary["t_x"], summary["T"]
    cold = clv.bgnbd_fit(*columns)
    warm = clv.bgnbd_fit(*columns, start=(value,) * 4)
    assert warm.started_from == "zeros instead"
    assert (warm.r, warm.alpha, warm.a, warm.b) == (cold.r, cold.alpha, cold.a, cold.b)
    cold_gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"])
    warm_gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"], start=(value,) * 3)
    assert warm_gg.started_from == "zeros instead"
    assert (warm_gg.p, warm_gg.q, warm_gg.gamma) == (cold_gg.p, cold_gg.q, cold_gg.gamma)


def test_every_customers_scores_equal_the_formulas_applied_to_them_one_by_one(summary):
    # prediction_scores computes once per distinct (x, t_x, T) and once per distinct (x, T):
    # customers sharing either must get exactly what the formulas give each of them.
    model = clv.bgnbd_fit(summary["x"], summary["t_x"], summary["T"])
    gg = clv.gamma_gamma_fit(summary["x"], summary["monetary"])
    scores = clv.prediction_scores(
        summary, bgnbd=model, gg=gg, time_unit_days=7, monthly_discount=0.01
    )
    x, t_x, T = (summary[c].to_numpy(np.float64) for c in ("x", "t_x", "T"))
    assert len(summary.groupby(["x", "T"])) < len(summary.groupby(["x", "t_x", "T"])) < len(x)
    assert np.array_equal(scores["p_alive"], clv.bgnbd_p_alive(model, x, t_x, T))
    for days in (30, 90, 365):
        one_by_one = clv.bgnbd_expected_purchases(model, days / 7, x, t_x, T)
        assert np.array_equal(scores[f"expected_purchases_{days}d"], one_by_one)
    value = clv.customer_value(
        model, gg, x, t_x, T, summary["monetary"].to_numpy(), time_unit_days=7
    )
    assert np.array_equal(scores["value_12m"], value)


def _stuck_search(x: list[float], jac: list[float], fun: float):
    """A search that L-BFGS-B gave up at x (status 2: its line search made no progress)."""
    return optimize.OptimizeResult(
        x=np.array(x), jac=np.array(jac), fun=fun, success=False, status=2
    )


def _bowl(customers: int = 1) -> clv.Objective:
    return clv.Objective(
        negative=lambda v: (float((v**2).sum()) * customers, 2 * v * customers),
        customers=customers,
    )


def test_a_search_stopped_by_rounding_at_the_minimum_counts_as_settled_whatever_its_gradient():
    # The gradient reported is off by rounding (as with p far out on its bound), yet every
    # step downhill raises the likelihood: the search is at the minimum.
    stuck = _stuck_search([0.0, 0.0, 0.0], [0.0, -2e-5, 0.0], fun=0.0)

    assert clv._settled(stuck, _bowl())


def test_a_search_stopped_short_of_the_minimum_does_not_count_as_settled():
    # Steps downhill still lower the likelihood by more than rounding.
    for offset in (1e-3, 0.5):
        x = np.array([0.0, offset, 0.0])
        stuck = _stuck_search(list(x), list(2 * x), fun=float((x**2).sum()))
        assert not clv._settled(stuck, _bowl(customers=160))


def test_a_parameter_on_its_bound_is_not_probed_beyond_it():
    # Downhill lies beyond the bound only: no step within the bounds lowers the likelihood.
    edge = clv.LOG_BOUND
    objective = clv.Objective(negative=lambda v: (float(-v[0]), np.array([-1.0])), customers=1)

    assert clv._settled(_stuck_search([edge], [-1.0], fun=-edge), objective)
