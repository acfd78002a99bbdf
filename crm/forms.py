"""Forms of the customer pages: they check the shape of the input; services enforce the rules."""

import zoneinfo
from decimal import Decimal

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from crm.models import CUSTOMER_SENSITIVE_FIELDS, Activity, Customer, Purchase
from crm.services import ACTIVITY_SUMMARY_MAX, BUSINESS_NAME_MAX, FEEDBACK_COMMENT_MAX


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


class DateInput(forms.DateInput):
    input_type = "date"


# The customer fields staff edit on the customer pages (the purchase figures are derived).
CUSTOMER_FORM_FIELDS = (
    "name",
    "email",
    "phone",
    "city",
    "country",
    "birth_date",
    "age",
    "annual_income",
    "notes",
    "marketing_consent",
    "profiling_opt_out",
    "is_archived",
)


class CustomerForm(forms.ModelForm):
    """A customer's own fields; crm.services.customer_create / customer_update write them."""

    tag_names = forms.CharField(
        label="Tags",
        required=False,
        help_text="Comma-separated; new tags are created.",
    )

    class Meta:
        model = Customer
        fields = CUSTOMER_FORM_FIELDS
        widgets = {"birth_date": DateInput(), "notes": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, with_tags: bool = True, sensitive: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not with_tags:
            del self.fields["tag_names"]
        if not sensitive:  # a user without crm.view_customer_sensitive neither sees nor sets them
            for name in CUSTOMER_SENSITIVE_FIELDS:
                self.fields.pop(name, None)

    def _post_clean(self):
        # The services validate the instance (and the e-mail clash) themselves; the model
        # form's own full_clean would do it twice and change the instance before they run.
        pass

    def tag_list(self) -> list[str]:
        return [t.strip() for t in self.cleaned_data.get("tag_names", "").split(",") if t.strip()]

    def changed_fields(self) -> dict:
        return {f: self.cleaned_data[f] for f in self.changed_data if f in CUSTOMER_FORM_FIELDS}


class SaleForm(forms.Form):
    """A sale recorded by hand on the customer page (crm.services.purchase_record)."""

    amount = forms.DecimalField(
        label="Amount", max_digits=12, decimal_places=2, min_value=Decimal("0.01")
    )
    purchased_on = forms.DateField(
        label="Date", required=False, widget=DateInput(), help_text="Empty: now."
    )
    product = forms.CharField(label="Product", max_length=200, required=False)
    channel = forms.ChoiceField(
        label="Channel", choices=[("", "—"), *Purchase.Channel.choices], required=False
    )


class ActivityForm(forms.Form):
    """A call, an e-mail or a note logged against a customer (crm.services.activity_log)."""

    kind = forms.ChoiceField(label="What", choices=Activity.Kind.choices)
    summary = forms.CharField(
        label="Notes",
        required=False,
        max_length=ACTIVITY_SUMMARY_MAX,
        widget=forms.Textarea(attrs={"rows": 2, "maxlength": ACTIVITY_SUMMARY_MAX}),
    )


class FollowUpForm(forms.Form):
    """A day to get back to a customer (crm.services.followup_create)."""

    due_on = forms.DateField(label="Follow up on", widget=DateInput())
    note = forms.CharField(label="About", max_length=500, required=False)


def _time_zone_choices() -> list[tuple[str, str]]:
    return [(zone, zone.replace("_", " ")) for zone in sorted(zoneinfo.available_timezones())]


class BusinessSettingsForm(forms.Form):
    """The owner's Settings page: the business's name, currency and time zone."""

    name = forms.CharField(
        label="Business name",
        max_length=BUSINESS_NAME_MAX,
        help_text="Customers see it on their feedback and offer pages and in e-mails.",
    )
    currency = forms.CharField(
        label="Currency",
        max_length=3,
        error_messages={"max_length": "Use the three letters of ISO 4217, such as EUR or USD."},
        widget=forms.TextInput(attrs={"size": 4, "autocapitalize": "characters"}),
        help_text=(
            "The three-letter code written next to every amount, such as EUR, USD or GBP. "
            "Changing it converts nothing: recorded amounts keep their figures."
        ),
    )
    time_zone = forms.ChoiceField(
        label="Time zone",
        choices=_time_zone_choices,
        error_messages={"invalid_choice": "Choose a time zone from the list."},
        help_text="Dates and \u201ctoday\u201d on every page follow it.",
    )
