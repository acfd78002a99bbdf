"""Forms of the pages that combine every app."""

from django import forms

ERASE_WORD = "erase"


class CustomerEraseForm(forms.Form):
    """The owner types a word to confirm: an erasure cannot be undone."""

    confirm = forms.CharField(
        label=f'Type "{ERASE_WORD}" to confirm',
        max_length=20,
        help_text="This cannot be undone.",
    )

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip()
        if value.casefold() != ERASE_WORD:
            raise forms.ValidationError(f'Type the word "{ERASE_WORD}" to erase this customer.')
        return value
