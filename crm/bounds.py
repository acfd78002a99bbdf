"""What the database can hold: limits derived from the model fields, checked before any write.

One home for the bounds of numbers, dates and text, used by the importers, the forms, the
admin and the API. SQLite stores any decimal and any 64-bit integer, PostgreSQL refuses what
does not fit (a 500 instead of a form error), and neither holds a NUL byte in text on
PostgreSQL: every entry point checks here, so a value is refused the same way everywhere.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.deconstruct import deconstructible

# Dates outside these years are typing mistakes (a year 1 or 20240), and a datetime of year 1
# cannot be converted to UTC east of Greenwich: refused before it reaches the database.
YEAR_MIN = 1900
YEAR_MAX = 2200

NUL_MESSAGE = "contains a NUL byte (\\x00), which no text may hold"

# The ranges PostgreSQL enforces (SQLite accepts any 64-bit integer): the portable bounds.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "SmallIntegerField": (-32768, 32767),
    "PositiveSmallIntegerField": (0, 32767),
    "IntegerField": (-2147483648, 2147483647),
    "PositiveIntegerField": (0, 2147483647),
    "BigIntegerField": (-(2**63), 2**63 - 1),
    "PositiveBigIntegerField": (0, 2**63 - 1),
}


def decimal_limit(field: models.DecimalField) -> Decimal:
    """The first value a DecimalField cannot hold: 10 ** (max_digits - decimal_places)."""
    return Decimal(10) ** (field.max_digits - field.decimal_places)


def model_field(model: type[models.Model], name: str) -> models.Field:
    return model._meta.get_field(name)


def decimal_checked(model: type[models.Model], name: str, value: Decimal) -> Decimal:
    """The value when the model's DecimalField can hold it; ValueError saying why otherwise."""
    limit = decimal_limit(model_field(model, name))
    if abs(value) >= limit:
        raise ValueError(f"{value} is too large (the largest is {limit - Decimal('0.01'):,})")
    return value


def text_checked(value: str, *, max_length: int | None = None) -> str:
    """The text when it holds no NUL byte and fits max_length; ValueError otherwise."""
    if "\x00" in value:
        raise ValueError(NUL_MESSAGE)
    if max_length and len(value) > max_length:
        raise ValueError(f"longer than {max_length} characters")
    return value


def model_text_checked(model: type[models.Model], name: str, value: str) -> str:
    """text_checked with the model field's own max_length."""
    return text_checked(value, max_length=model_field(model, name).max_length)


def date_checked(value: date | datetime) -> date | datetime:
    """The date when its year is within YEAR_MIN..YEAR_MAX; ValueError otherwise."""
    if not YEAR_MIN <= value.year <= YEAR_MAX:
        raise ValueError(f"the year {value.year} is out of range ({YEAR_MIN}-{YEAR_MAX})")
    return value


@deconstructible
class YearRangeValidator:
    """A form or serializer validator for dates and datetimes (see date_checked)."""

    def __call__(self, value):
        if value is None:
            return
        try:
            date_checked(value)
        except ValueError as exc:
            raise ValidationError(str(exc).capitalize() + ".", code="year_range") from None

    def __eq__(self, other):
        return isinstance(other, YearRangeValidator)


@deconstructible
class NoNulValidator:
    """A validator refusing NUL bytes in text (PostgreSQL cannot store them)."""

    def __call__(self, value):
        if isinstance(value, str) and "\x00" in value:
            raise ValidationError("Text may not contain a NUL byte (\\x00).", code="null_char")

    def __eq__(self, other):
        return isinstance(other, NoNulValidator)


@deconstructible
class DecimalBoundValidator:
    """Refuses a decimal whose whole part has more digits than the field holds."""

    def __init__(self, limit: Decimal):
        self.limit = limit

    def __call__(self, value):
        if value is not None and abs(value) >= self.limit:
            raise ValidationError(
                f"Too large: the largest value is {self.limit - Decimal('0.01'):,}.",
                code="too_large",
            )

    def __eq__(self, other):
        return isinstance(other, DecimalBoundValidator) and other.limit == self.limit


def field_validators(field: models.Field) -> list:
    """The validators that keep a form or API value of this model field within the database.

    Integer ranges come from PostgreSQL's (SQLite would take and then return any 64-bit
    value); decimals by their digits; dates by year; text by NUL bytes.
    """
    internal = field.get_internal_type()
    if internal in INTEGER_RANGES:
        low, high = INTEGER_RANGES[internal]
        return [MinValueValidator(low), MaxValueValidator(high)]
    if isinstance(field, models.DecimalField):
        return [DecimalBoundValidator(decimal_limit(field))]
    if isinstance(field, models.DateField):  # DateTimeField is a DateField
        return [YearRangeValidator()]
    if isinstance(field, models.CharField | models.TextField):
        return [NoNulValidator()]
    return []


def formfield_bounded(field: models.Field, formfield):
    """The form field with the database's bounds added (None passes through)."""
    if formfield is not None:
        for validator in field_validators(field):
            if validator not in formfield.validators:
                formfield.validators.append(validator)
    return formfield


def bounded_formfield_callback(field: models.Field, **kwargs):
    """A ModelForm formfield_callback: Django's form field plus the database's bounds."""
    return formfield_bounded(field, field.formfield(**kwargs))
