"""Segmentation forms: they check the shape of the input; services enforce the rules."""

from django import forms

from segmentation.models import Segment


class SegmentPinForm(forms.Form):
    """Put a customer in a segment of the owner's choice and keep them there."""

    segment = forms.ModelChoiceField(queryset=None, empty_label=None, label="Pin to")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # "Opted out of profiling" follows the customer's choice, not the owner's.
        self.fields["segment"].queryset = (
            Segment.objects.active().exclude(kind=Segment.Kind.OPTED_OUT).order_by("name")
        )
