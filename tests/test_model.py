"""The value objects every layer shares: the key check and the completeness rule."""

from __future__ import annotations

import pytest

from dicomweb_gw.model import RetrieveKeys, RetrieveReport

STUDY, OTHER_STUDY = "1.2.3", "1.2.4"
SERIES, OTHER_SERIES = "1.2.3.1", "1.2.3.2"
SOP = "1.2.3.1.1"


@pytest.mark.parametrize(("keys", "study", "series", "sop", "expected"), [
    (RetrieveKeys(STUDY), STUDY, SERIES, SOP, True),
    (RetrieveKeys(STUDY), OTHER_STUDY, SERIES, SOP, False),
    (RetrieveKeys(STUDY, SERIES), STUDY, SERIES, SOP, True),
    (RetrieveKeys(STUDY, SERIES), STUDY, OTHER_SERIES, SOP, False),
    # The defect of issue #14: the right instance under someone else's study.
    (RetrieveKeys(OTHER_STUDY, SERIES, SOP), STUDY, SERIES, SOP, False),
    (RetrieveKeys(STUDY, OTHER_SERIES, SOP), STUDY, SERIES, SOP, False),
    (RetrieveKeys(STUDY, SERIES, SOP), STUDY, SERIES, SOP, True),
    (RetrieveKeys(STUDY, SERIES, SOP), STUDY, SERIES, "1.2.3.1.2", False),
])
def test_covers_checks_every_parent_uid(keys: RetrieveKeys, study: str, series: str, sop: str,
                                        expected: bool) -> None:
    assert keys.covers(study, series, sop) is expected


def test_a_study_covers_its_series_but_not_the_reverse() -> None:
    study, series = RetrieveKeys(STUDY), RetrieveKeys(STUDY, SERIES)
    assert study.covers_keys(series)
    assert study.covers_keys(RetrieveKeys(STUDY, SERIES, SOP))
    assert not series.covers_keys(study)
    assert not series.covers_keys(RetrieveKeys(STUDY, OTHER_SERIES))
    assert not study.covers_keys(RetrieveKeys(OTHER_STUDY))


@pytest.mark.parametrize(("report", "complete"), [
    (RetrieveReport(), False),  # never finished (cancelled, failed)
    (RetrieveReport(succeeded=True, reported=0, received=0), False),  # empty: not there yet
    (RetrieveReport(succeeded=True, reported=None, received=0), False),
    (RetrieveReport(succeeded=True, reported=3, received=3), True),
    (RetrieveReport(succeeded=True, reported=None, received=3), True),  # counts left out
    (RetrieveReport(succeeded=True, reported=4, received=3), False),
    (RetrieveReport(succeeded=True, reported=3, received=4), False),
    (RetrieveReport(succeeded=True, reported=3, received=3, failed=1), False),
])
def test_complete_only_when_the_counts_add_up(report: RetrieveReport, complete: bool) -> None:
    assert report.complete is complete
