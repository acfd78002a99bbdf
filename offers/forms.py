"""Offer forms: they check the shape of the input; offers.services enforces the rules."""

from django import forms

from crm.bounds import bounded_formfield_callback
from offers.messages import DEFAULT_SUBJECT, MERGE_FIELDS
from offers.models import Offer, OfferResponse
from offers.services import OFFER_EDITABLE_FIELDS
from segmentation.models import Segment


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
        # Numbers, dates and text within what the columns hold (attribution_days=99999999999).
        formfield_callback = bounded_formfield_callback
        widgets = {
            "starts_on": DateInput(),
            "ends_on": DateInput(),
            "description": forms.Textarea(attrs={"rows": 3}),
            "email_body": forms.Textarea(attrs={"rows": 10}),
        }
        labels = {
            "starts_on": "Starts on",
            "ends_on": "Ends on",
            "discount_percent": "Discount %",
            "holdout_share": "Control group share",
            "attribution_days": "Count purchases for (days)",
            "is_active": "Active",
            "email_subject": "E-mail subject",
            "email_body": "E-mail text",
        }
        help_texts = {
            "holdout_share": "Share of customers kept aside to measure the offer's effect "
            "(0.1 = 10%).",
            "attribution_days": "Purchases this many days after an acceptance count as the "
            "offer's revenue.",
            "email_subject": "Empty: “" + DEFAULT_SUBJECT + "”.",
            "email_body": "Plain text. Merge fields: "
            + ", ".join("{" + f + "}" for f in MERGE_FIELDS)
            + ". Empty: a short standard text. Every message also carries an unsubscribe link.",
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
