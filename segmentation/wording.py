"""What the owner reads about a run: plain sentences from its figures. Pure and light (no
scikit-learn), so pages can import it."""


def distinctness_words(silhouette: float | None, *, scoring: bool = False) -> str:
    """How distinct the groups are, in plain words (the silhouette stays in the admin)."""
    if scoring:
        return "Customers are placed by simple scores for how recently, often and much they buy."
    if silhouette is None:
        return "Too few customers to say how distinct the groups are."
    if silhouette >= 0.5:
        return "The groups are clearly distinct."
    if silhouette >= 0.35:
        return "The groups are fairly distinct; some customers sit between two of them."
    if silhouette >= 0.2:
        return (
            "The groups shade into each other, as most shops' customers do: they follow "
            "what you can act on."
        )
    return "The groups overlap heavily: use them as a rough guide."


def run_words(
    *,
    n_customers: int,
    silhouette: float | None,
    confidence: str,
    scoring: bool = False,
    stale_days: int | None = None,
) -> list[str]:
    """Sentences for the owner about a run: how confident it is and how distinct its groups
    are, from the run's figures. Pure; no technical figure appears."""
    first = f"{confidence.capitalize()} confidence: {n_customers:,} customers"
    if stale_days is not None:
        first += f", but the newest purchase is {stale_days:,} days old."
    else:
        first += "."
    return [first, distinctness_words(silhouette, scoring=scoring)]
