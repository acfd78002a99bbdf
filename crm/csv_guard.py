"""The formula guard of exported CSV cells, and its exact undoing on import."""

# Cells a spreadsheet would run as a formula (CSV injection, OWASP): the export writes them
# with a leading "'".
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
GUARD = "'"


def csv_guarded(text: str) -> bool:
    """True when the text starts with the guard the export adds: "'" before a formula start,
    or before another "'" (the export guards a text that itself looks guarded)."""
    return text[:1] == GUARD and text[1:].startswith((*FORMULA_STARTS, GUARD))


def csv_unguard(text: str) -> str:
    """The cell as it was before the export guarded it: exactly one leading guard removed."""
    return text[1:] if csv_guarded(text) else text
