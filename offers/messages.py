"""Offer e-mails: merge fields filled into the owner's text. Knows nothing about Django.

The owner's subject and body are plain text with {field} placeholders. They are filled in by
reading the text with string.Formatter().parse and substituting whitelisted names only: no
attribute or index lookups, no format specs, no template tags, so nothing the owner writes
is ever executed. Messages are sent as plain text, so there is nothing to escape.
"""

from dataclasses import dataclass
from functools import lru_cache
from string import Formatter

MERGE_FIELDS = (
    "first_name",
    "name",
    "offer_title",
    "offer_terms",
    "offer_link",
    "business_name",
    "unsubscribe_link",
)

DEFAULT_SUBJECT = "{first_name}, an offer for you: {offer_title}"
DEFAULT_BODY = (
    "Hello {first_name},\n\n"
    "{offer_title}\n{offer_terms}\n\n"
    "See the offer and accept it here: {offer_link}\n\n"
    "{business_name}\n\n"
    "You receive this because you agreed to hear about our offers. "
    "Unsubscribe with one click: {unsubscribe_link}\n"
)


class MessageTemplateError(ValueError):
    """The owner's text has a placeholder that is not a merge field, or a broken brace."""


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


def template_fields(text: str) -> list[str]:
    """The merge fields a text uses, in order; raises MessageTemplateError for anything else.

    Literal braces are written doubled: {{ and }}.
    """
    try:
        parsed = list(Formatter().parse(text))
    except ValueError as error:
        raise MessageTemplateError(
            f"Braces do not match ({error}); write {{{{ or }}}} for a literal brace."
        ) from None
    used = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in MERGE_FIELDS or spec or conversion:
            shown = (
                "{"
                + name
                + ("!" + conversion if conversion else "")
                + (":" + spec if spec else "")
                + "}"
            )
            raise MessageTemplateError(
                f"{shown} is not a merge field; use one of "
                + ", ".join("{" + f + "}" for f in MERGE_FIELDS)
                + "."
            )
        used.append(name)
    return used


@lru_cache(maxsize=64)
def _compiled(text: str) -> tuple[tuple[str, str | None], ...]:
    """``text`` checked and split into (literal, field) pairs once: a send renders the same
    subject and body for every customer, and only the substitution differs."""
    template_fields(text)
    return tuple((literal, name) for literal, name, _, _ in Formatter().parse(text))


@lru_cache(maxsize=64)
def _fields_used(text: str) -> frozenset[str]:
    return frozenset(template_fields(text))


def text_render(text: str, values: dict[str, str]) -> str:
    """Fill the merge fields of ``text`` from ``values`` (every field in MERGE_FIELDS)."""
    out = []
    for literal, name in _compiled(text):
        out.append(literal)
        if name is not None:
            out.append(str(values.get(name, "")))
    return "".join(out)


def message_render(*, subject: str, body: str, values: dict[str, str]) -> Message:
    """The message for one customer. The subject is one line whatever the values hold (a
    line break in a header would end it, or smuggle in another one); a body without
    {unsubscribe_link} gets the link appended."""
    one_line = " ".join(text_render(subject or DEFAULT_SUBJECT, values).split())
    body = body or DEFAULT_BODY
    text = text_render(body, values)
    if "unsubscribe_link" not in _fields_used(body):
        # Every marketing message carries its way out, whatever the owner wrote.
        text = f"{text.rstrip()}\n\n--\nUnsubscribe with one click: {values['unsubscribe_link']}\n"
    return Message(subject=one_line, body=text)


def first_name_of(name: str) -> str:
    """The first word of a customer's name, or a friendly stand-in when there is none."""
    words = name.split()
    return words[0] if words else "there"
