"""Segment vocabulary: what pages ask of segments by behaviour, never by name."""

import pytest

from segmentation.models import Segment
from tests.factories import SegmentFactory


@pytest.mark.django_db
def test_at_risk_segments_are_found_by_behaviour_whatever_the_owner_calls_them():
    slipping = [
        SegmentFactory(name="Write to these", behaviour=Segment.Behaviour.CANT_LOSE),
        SegmentFactory(name="Champions", behaviour=Segment.Behaviour.AT_RISK),
        SegmentFactory(name="Dozing", behaviour=Segment.Behaviour.ABOUT_TO_SLEEP),
        SegmentFactory(name="Grumpy VIPs", behaviour=Segment.Behaviour.UNHAPPY_HIGH_VALUE),
    ]
    SegmentFactory(name="At risk", behaviour=Segment.Behaviour.CHAMPIONS)
    SegmentFactory(name="Can't lose them", behaviour=Segment.Behaviour.LOST)
    SegmentFactory(name="Prospects", behaviour="")

    assert set(Segment.objects.at_risk()) == set(slipping)
