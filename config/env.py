"""Read the environment strictly: a value that cannot be read stops the start and says why."""

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str = "") -> str:
    """The variable's text, stripped; the default when it is unset or empty."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = env_str(name).lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be 1/0, true/false, yes/no or on/off (any case; empty for the "
        f"default), not {os.environ[name]!r}."
    )


def env_int(name: str, default: int, *, low: int | None = None, high: int | None = None) -> int:
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}.") from None
    if low is not None and high is not None and not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be between {low} and {high}, not {value}.")
    if low is not None and value < low:
        raise ImproperlyConfigured(f"{name} must be {low} or more, not {value}.")
    if high is not None and value > high:
        raise ImproperlyConfigured(f"{name} must be {high} or less, not {value}.")
    return value


def env_float(name: str, default: float, *, low: float, high: float) -> float:
    """A number between `low` and `high` (a finite one: "nan" and "inf" are refused)."""
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}.") from None
    if not low <= value <= high:  # also false for nan
        raise ImproperlyConfigured(f"{name} must be between {low} and {high}, not {raw}.")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (matched in any case and returned as written there)."""
    raw = env_str(name)
    if not raw:
        return default
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {raw!r}.")


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated list; blank items are dropped."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_email(name: str = "EMAIL_URL") -> dict[str, object]:
    """Django's EMAIL_* settings from one URL: smtp://user:pass@host:port, ?tls or ?ssl.

    Empty: no settings (the caller's defaults apply). Any other scheme, a missing host, both
    tls and ssl, or an unknown query parameter stops the start and says why.
    """
    from urllib.parse import parse_qs, unquote, urlsplit

    raw = env_str(name)
    if not raw:
        return {}
    parts = urlsplit(raw)
    if parts.scheme not in ("smtp", "smtps"):
        raise ImproperlyConfigured(f"{name} must start with smtp:// or smtps://, not {raw!r}.")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a port that is not a number.") from None
    if not parts.hostname:
        raise ImproperlyConfigured(f"{name} must name a host: smtp://user:pass@host:port.")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"tls", "ssl"}
    if unknown:
        raise ImproperlyConfigured(
            f"{name} may carry ?tls or ?ssl, not {', '.join(sorted(unknown))}."
        )
    use_ssl = "ssl" in query or parts.scheme == "smtps"
    use_tls = "tls" in query
    if use_ssl and use_tls:
        raise ImproperlyConfigured(f"{name} cannot ask for both tls and ssl.")
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": port or (465 if use_ssl else 587 if use_tls else 25),
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": use_tls,
        "EMAIL_USE_SSL": use_ssl,
    }
