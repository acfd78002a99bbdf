"""Offer e-mail texts: merge fields filled in safely, defaults, the unsubscribe link kept."""

import pytest

from offers.messages import (
    DEFAULT_SUBJECT,
    MessageTemplateError,
    message_render,
    template_fields,
    text_render,
)

VALUES = {
    "first_name": "Ada",
    "name": "Ada Lovelace",
    "offer_title": "Tea for two",
    "offer_terms": "10% off.",
    "offer_link": "https://crm.example.com/o/abc/",
    "business_name": "Tea House",
    "unsubscribe_link": "https://crm.example.com/u/xyz/",
}


def test_merge_fields_are_filled_in_and_doubled_braces_stay_literal():
    assert text_render("Hi {first_name}, {offer_title} {{not a field}}", VALUES) == (
        "Hi Ada, Tea for two {not a field}"
    )


@pytest.mark.parametrize(
    "text",
    [
        "{first_name.__class__}",
        "{first_name[0]}",
        "{secret_key}",
        "{first_name!r}",
        "{first_name:>10}",
        "{% load static %}{first_name",
        "{}",
    ],
)
def test_anything_but_a_plain_merge_field_is_refused(text):
    with pytest.raises(MessageTemplateError):
        template_fields(text)


def test_template_code_in_the_owner_text_or_the_values_is_never_run():
    values = {**VALUES, "first_name": "{{ settings.SECRET_KEY }} {offer_link}"}
    body = "{{% now 'Y' %}} {first_name}"
    rendered = message_render(subject="x", body=body, values=values).body
    assert rendered.startswith("{% now 'Y' %} {{ settings.SECRET_KEY }} {offer_link}")


def test_the_subject_is_one_line_even_when_a_name_holds_a_line_break():
    values = {**VALUES, "first_name": "Ada\r\nBcc: everyone@example.com"}
    subject = message_render(subject="", body="", values=values).subject
    assert "\n" not in subject and "\r" not in subject
    assert subject == DEFAULT_SUBJECT.format(**values).replace("\r\n", " ")


def test_a_body_without_the_unsubscribe_field_gets_the_link_appended():
    body = message_render(subject="s", body="Just {offer_title}.", values=VALUES).body
    assert body.startswith("Just Tea for two.")
    assert body.rstrip().endswith("Unsubscribe with one click: https://crm.example.com/u/xyz/")
    once = message_render(subject="s", body="Bye {unsubscribe_link}", values=VALUES).body
    assert once.count("https://crm.example.com/u/xyz/") == 1
