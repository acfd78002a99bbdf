"""gunicorn's access log without customers' tokens or search terms (see config.log_redaction).

Set by gunicorn.conf.py at the project's root, which gunicorn reads when started there.
"""

from gunicorn.glogging import Logger

from config.log_redaction import redacted_query, redacted_text

# Access-log fields that hold a bare query string (no "?" in front).
_QUERY_ATOMS = {"q", "{query_string}e"}


class RedactingGunicornLogger(Logger):
    """gunicorn's logger, whose access-log fields (request line, path, query, referer,
    environ and headers) are redacted before the line is written."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if not isinstance(value, str) or key == "t":
                continue
            clean = redacted_query if key.lower() in _QUERY_ATOMS else redacted_text
            atoms[key] = clean(value)
        return atoms
