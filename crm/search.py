"""The normalised search text of a customer, and of a search term. Knows nothing about Django."""

import re
import unicodedata

# The Customer fields search_text is made of: a writer that changes one recomputes it.
SEARCHED_FIELDS = frozenset({"name", "email", "phone"})
# A phone is matched on its last digits: enough to tell people apart (7+ typed), few enough
# that a number typed with or without its country code (or a national trunk "0") matches.
PHONE_MATCH_MAX_DIGITS = 10
# Separates the name, e-mail and phone parts so that a term never matches across two of them.
_SEPARATOR = "|"
_PHONE_TERM = re.compile(r"[+\d][\d\s().+-]*")


def text_folded(value: str) -> str:
    """Lower-cased, accents stripped, spaces collapsed: " Zoë  Ólafsdóttir" -> "zoe olafsdottir"."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.replace(_SEPARATOR, " ").split())


def phone_digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def customer_search_text(*, name: str, email: str, phone: str) -> str:
    """What Customer.search_text holds: folded name, folded e-mail, phone digits."""
    return _SEPARATOR.join((text_folded(name), text_folded(email), phone_digits(phone)))


def search_needle(term: str) -> str:
    """The substring to look for in search_text: the digits of a phone-like term (its last
    10 at most, so a country code or trunk "0" typed or not still matches), else the folded
    term. "" when there is nothing to search."""
    term = term.strip()
    if _PHONE_TERM.fullmatch(term) and (digits := phone_digits(term)):
        # Spaces, "+", dashes and brackets are how the number was written, not the number.
        return digits[-PHONE_MATCH_MAX_DIGITS:]
    return text_folded(term)
