"""Forms of the staff pages: they check the shape of the input; services enforce the rules."""

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from crm.models import Offer, OfferResponse
from crm.offers import OFFER_EDITABLE_FIELDS
from crm.services import FEEDBACK_COMMENT_MAX
from segmentation.models import Segment


class FeedbackForm(forms.Form):
    """Feedback the owner records for a customer (a rating, an NPS answer, or both)."""

    rating = forms.TypedChoiceField(
        label="Rating",
        choices=[("", "—")] + [(str(i), f"{i} ★") for i in range(5, 0, -1)],
        coerce=int,
        empty_value=None,
        required=False,
        help_text="How satisfied, 1 (very unhappy) to 5 (delighted).",
    )
    nps = forms.IntegerField(
        label="Would recommend (0-10)",
        required=False,
        validators=[MinValueValidator(0), MaxValueValidator(10)],
        widget=forms.NumberInput(attrs={"min": 0, "max": 10, "step": 1}),
        help_text="How likely to recommend us, 0 to 10.",
    )
    comment = forms.CharField(
        label="Comment",
        required=False,
        max_length=FEEDBACK_COMMENT_MAX,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": FEEDBACK_COMMENT_MAX}),
    )

    def clean(self):
        data = super().clean()
        scored = self.has_error("rating") or self.has_error("nps")
        if not scored and data.get("rating") is None and data.get("nps") is None:
            raise forms.ValidationError("Give a rating, a 0-10 score, or both.")
        return data


class OfferOutcomeForm(forms.Form):
    """One click on the customer page: the offer was presented, accepted or declined."""

    outcome = forms.ChoiceField(
        choices=[
            (OfferResponse.Outcome.PRESENTED, "Presented"),
            (OfferResponse.Outcome.ACCEPTED, "Accepted"),
            (OfferResponse.Outcome.DECLINED, "Declined"),
        ]
    )


class DateInput(forms.DateInput):
    input_type = "date"


class OfferForm(forms.ModelForm):
    field_order = ["title", "description", "segments"]  # then OFFER_EDITABLE_FIELDS' order
    segments = forms.ModelMultipleChoiceField(
        queryset=Segment.objects.active().order_by("-size", "id"),
        required=False,
        help_text="The segments this offer is for (hold Ctrl or ⌘ to choose several).",
    )

    class Meta:
        model = Offer
        fields = [*OFFER_EDITABLE_FIELDS, "segments"]
        widgets = {
            "starts_on": DateInput(),
            "ends_on": DateInput(),
            "description": forms.Textarea(attrs={"rows": 3}),
        }
        labels = {
            "starts_on": "Starts on",
            "ends_on": "Ends on",
            "discount_percent": "Discount %",
            "holdout_share": "Control group share",
            "attribution_days": "Count purchases for (days)",
            "is_active": "Active",
        }
        help_texts = {
            "holdout_share": "Share of customers kept aside to measure the offer's effect "
            "(0.1 = 10%).",
            "attribution_days": "Purchases this many days after an acceptance count as the "
            "offer's revenue.",
        }

    def clean(self):
        data = super().clean()
        starts, ends = data.get("starts_on"), data.get("ends_on")
        if starts and ends and ends < starts:
            self.add_error("ends_on", "The offer cannot end before it starts.")
        return data


class PresentOfferForm(forms.Form):
    """Present one open offer to every eligible member of a segment."""

    offer = forms.ModelChoiceField(queryset=Offer.objects.none(), empty_label=None)

    def __init__(self, *args, offers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["offer"].queryset = offers if offers is not None else Offer.objects.none()


class SegmentPinForm(forms.Form):
    """Put a customer in a segment of the owner's choice and keep them there."""

    segment = forms.ModelChoiceField(queryset=None, empty_label=None, label="Pin to")

    def __init__(self, *args, **kwargs):
        from segmentation.models import Segment

        super().__init__(*args, **kwargs)
        # "Opted out of profiling" follows the customer's choice, not the owner's.
        self.fields["segment"].queryset = (
            Segment.objects.active().exclude(kind=Segment.Kind.OPTED_OUT).order_by("name")
        )
