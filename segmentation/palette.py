"""The one palette of segment colours (colour-blind-safe, after Okabe & Ito). Pure."""

SEGMENT_COLORS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#999999",
    "#332288",
    "#117733",
    "#882255",
    "#44AA99",
)
# The special segments (no purchase yet, opted out) wear greys outside the palette.
PROSPECTS_COLOR = "#9e9e9e"
OPTED_OUT_COLOR = "#616161"


def segment_color(index: int) -> str:
    """The palette's colour for the index-th segment, cycling when there are more segments."""
    return SEGMENT_COLORS[index % len(SEGMENT_COLORS)]
