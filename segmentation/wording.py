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
    # The clustered customers only: the segment tables beside it also count prospects and
    # those who opted out, so a bare "2,000 customers" there would contradict this count.
    who = "customer who has" if n_customers == 1 else "customers who have"
    first = f"{confidence.capitalize()} confidence, from the {n_customers:,} {who} bought"
    if stale_days is not None:
        first += f", but the newest purchase is {stale_days:,} days old."
    else:
        first += "."
    return [first, distinctness_words(silhouette, scoring=scoring)]


# What a running run is doing, in the owner's words, by the phase the engine reports.
PHASE_WORDS = {
    "": "Waiting for the worker to start",
    "waiting to retry": "Waiting to try again",
    "features": "Reading purchases and feedback",
    "preprocessing": "Preparing each customer's figures",
    "k_selection": "Finding how many groups fit best",
    "fit": "Grouping customers who buy alike",
    "naming_explanation": "Naming and describing the segments",
    "matching": "Matching the groups with the segments you know",
    "writing": "Placing customers in segments",
    "done": "Finishing",
}


def run_phase_words(*, phase: str, percent: int) -> str:
    """ "Placing customers in segments… 40 %": what an unfinished run is doing."""
    doing = PHASE_WORDS.get(phase, "Working")
    return f"{doing}… {percent} %"


def run_outcome_words(
    *, status: str, error: str, n_clustered: int, k: int | None, n_moved: int, first: bool = False
) -> str:
    """One sentence on how a finished run ended, for the page that watched it. A first run
    places everyone: nobody "changed" segment then."""
    if status == "succeeded":
        groups = f" in {k} segments" if k else ""
        if first:
            return f"Finished. Your first segments: {n_clustered:,} customers grouped{groups}."
        if n_moved == 0:
            moved = "nobody changed segment"
        elif n_moved == 1:
            moved = "1 customer changed segment"
        else:
            moved = f"{n_moved:,} customers changed segment"
        return f"Finished. {n_clustered:,} customers grouped{groups}; {moved}."
    if status == "rejected":
        return f"Not kept: {error} The segments stay as they were."
    if status == "skipped":
        return f"Did not start: {error}"
    return f"Failed: {error} The segments stay as they were."
