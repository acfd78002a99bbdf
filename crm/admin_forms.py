"""Forms of the admin's CSV import pages and bulk actions (shape only; services decide)."""

from django import forms
from django.conf import settings

from crm.import_jobs import MB, upload_too_large_message
from crm.importers import CUSTOMER_COLUMNS, PRESETS, PURCHASE_COLUMNS, parse_mapping


class ImportUploadForm(forms.Form):
    """Upload a CSV file for a preview; nothing is written until the preview is confirmed."""

    file = forms.FileField(
        help_text="UTF-8 CSV, comma-separated, with a header row; .csv.gz accepted."
    )
    only_valid = forms.BooleanField(
        required=False,
        label="Import only the valid rows",
        help_text="Otherwise nothing is imported while any row has an error.",
    )
    mapping = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        label="Column mapping",
        help_text="One per line: our_column=Column in your file (e.g. email=E-mail address).",
    )

    def __init__(self, *args, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.known = CUSTOMER_COLUMNS if kind == "customers" else PURCHASE_COLUMNS
        if kind == "purchases":
            self.fields["preset"] = forms.ChoiceField(
                required=False,
                choices=[("", "None (our column names)")]
                + [(p.name, f"{p.name}: {p.description}") for p in PRESETS.values()],
            )
            self.fields["create_customers"] = forms.BooleanField(
                required=False,
                label="Create missing customers",
                help_text="Create the customers the file names that do not exist yet.",
            )
            self.fields["date_format"] = forms.CharField(
                required=False,
                max_length=50,
                label="Date format",
                help_text="Only when the file's dates are not YYYY-MM-DD: e.g. %d/%m/%Y %H:%M "
                "(day/month/year). PayPal files from outside the US: %d/%m/%Y.",
            )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_UPLOAD_MB * MB:
            raise forms.ValidationError(upload_too_large_message(upload.size))
        return upload

    def clean_mapping(self):
        lines = [ln.strip() for ln in self.cleaned_data["mapping"].splitlines() if ln.strip()]
        try:
            mapping = parse_mapping(lines)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        unknown = sorted(set(mapping) - set(self.known))
        if unknown:
            raise forms.ValidationError(
                f"Unknown column(s): {', '.join(unknown)}. Ours are: {', '.join(self.known)}."
            )
        return mapping


class TagNamesForm(forms.Form):
    """Tags to add to the selected customers."""

    tag_names = forms.CharField(
        label="Tags", help_text="Comma-separated; missing tags are created.", max_length=500
    )

    def clean_tag_names(self):
        names = [n.strip() for n in self.cleaned_data["tag_names"].split(",") if n.strip()]
        if not names:
            raise forms.ValidationError("Give at least one tag name.")
        return names
