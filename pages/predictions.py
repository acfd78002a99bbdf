"""What the pages say about the predictions: sentences for the owner, never bare model output."""

from django.conf import settings
from django.core.cache import cache

from crm.models import Customer
from crm.selectors import business_get
from segmentation import clv_words, prediction_selectors
from segmentation import selectors as segment_selectors
from segmentation.models import CustomerPrediction, Segment

# A segment's prediction figures change only with a run: cached per segment and run.
SEGMENT_CACHE_SECONDS = 3600
NOT_YET = "Not enough data yet to say what this customer will do."


def customer_prediction(*, customer: Customer) -> dict:
    """The customer's outlook in words and numbers, with what it rests on, or an honest
    "not enough data yet" with the reason the last run gave."""
    prediction = prediction_selectors.customer_prediction_get(customer_id=customer.pk)
    if prediction is None:
        run = segment_selectors.run_latest()
        reason = (run.predictions or {}).get("reason", "") if run else ""
        if customer.purchase_count == 0:
            reason = "Predictions start with a first purchase."
        return {"words": NOT_YET, "basis": reason, "prediction": None}
    unit = settings.PREDICTIONS_TIME_UNIT_DAYS
    summary = prediction_selectors.customer_purchase_summary(
        customer_id=customer.pk, as_of=prediction.as_of, time_unit_days=unit
    )
    return {
        "words": clv_words.prediction_words(
            p_alive=prediction.p_alive,
            expected_purchases_90d=prediction.expected_purchases_90d,
            value_12m=prediction.value_12m,
            currency=business_get().currency,
            # Unknown once the sales it rests on are gone: then only the figures speak.
            repeat_purchases=summary.x if summary else None,
        ),
        "basis": clv_words.prediction_basis(
            x=summary.x, t_x=summary.t_x, T=summary.T, time_unit_days=unit
        )
        if summary
        else "",
        "prediction": prediction,
    }


def segment_prediction(*, segment: Segment) -> dict | None:
    """The segment's expected value over the next year and how many members are likely gone
    (None before any prediction covers it)."""
    run = segment_selectors.run_latest()
    key = f"segment-predictions:{segment.pk}:{run.pk if run else 0}"
    summary = cache.get(key)
    if summary is None:
        summary = prediction_selectors.segment_prediction_summary(segment=segment)
        cache.set(key, summary, SEGMENT_CACHE_SECONDS)
    return summary if summary["customers"] else None


def slipping_away(*, limit: int) -> list[CustomerPrediction]:
    """Valuable customers slipping away, the most value at risk first."""
    return list(prediction_selectors.customers_slipping_away(limit=limit))
