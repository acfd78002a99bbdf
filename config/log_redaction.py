"""Public tokens and search terms out of the logs: the web server's access log and Django's
logging write `/u/[redacted]/` for a customer's link and `q=[redacted]` for a query value.

Anyone holding a customer's feedback, offer or unsubscribe link can act as that customer, and
a search term is usually a name, an e-mail or a phone number: neither belongs in a log file
that is kept, copied and shipped elsewhere. The web server's side is
config.gunicorn_logging.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
# The public pages addressed by a token: feedback, unsubscribe, offer (and short forms).
_TOKEN_PATH = re.compile(r"(/(?:feedback|f|u|o)/)(?!thanks/)([^/?#\s\"']+)")
# A query string: from "?" to the end of the URL.
_QUERY = re.compile(r"\?([^\s\"'#]*)")
# Query keys whose values say nothing about a person (pagination, sorting, page filters).
# Any other key keeps its name and loses its value.
SAFE_QUERY_KEYS = frozenset(
    {"page", "p", "o", "sort", "order", "ordering", "per_page", "status", "kind", "retired",
     "all", "format", "tab", "period", "days", "segment", "run", "behaviour", "next_page"}
)  # fmt: skip
_SAFE_VALUE = re.compile(r"[\w.,:-]{0,40}")


def redacted_query(query: str) -> str:
    """A query string (without "?") with every value redacted but those of SAFE_QUERY_KEYS."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if key in SAFE_QUERY_KEYS and _SAFE_VALUE.fullmatch(value):
            parts.append(part)
        else:
            parts.append(f"{key}{sep}{REDACTED}" if sep else part and REDACTED)
    return "&".join(parts)


def redacted_text(text: str) -> str:
    """Any text holding URLs or paths (a request line, a log message), tokens and query
    values redacted."""
    if not text:
        return text
    text = _TOKEN_PATH.sub(lambda m: m.group(1) + REDACTED, text)
    return _QUERY.sub(lambda m: "?" + redacted_query(m.group(1)), text)


class RedactingFilter(logging.Filter):
    """A logging filter: the record's message is rendered and redacted (Django's request
    logging writes paths as arguments, e.g. "Not Found: %s")."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redacted_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
