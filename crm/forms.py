"""Forms of the customer pages: they check the shape of the input; services enforce the rules."""

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from crm.services import FEEDBACK_COMMENT_MAX


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
