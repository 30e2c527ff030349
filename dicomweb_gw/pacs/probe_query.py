"""The probe's C-FIND checks: models and levels, match limit, relational queries,
matching keys, empty Pending responses and the character set of names.

Every C-FIND goes on an association of its own and is capped (``Session.find``).
What the queries find (a study, its smallest series and that series'
instances) is kept in ``Facts`` for the retrieve checks. Findings describe
counts and statuses only, never what the PACS holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from pydicom.dataset import Dataset
from pynetdicom.presentation import build_context

from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.probe_charset import judge_charset
from dicomweb_gw.pacs.probe_dimse import FindOutcome, Session
from dicomweb_gw.pacs.probe_findings import Finding

__all__ = ["BROAD_CAP", "Facts", "check_charset", "check_empty_pending", "check_levels",
           "check_match_limit", "check_matching", "check_queries", "check_relational",
           "retrieve_identifier"]

#: A broad search stops (C-CANCEL) after this many matches or seconds: enough to
#: see a match limit, without reading a whole PACS.
BROAD_CAP = 2000
BROAD_SECONDS = 20.0
_INSTANCES_CAP = 500
_OUT_OF_RESOURCES = 0xA700
#: A value no study has: any match means the PACS ignored the key.
NO_SUCH_DESCRIPTION = "ZZZ_NO_SUCH_*"
NO_SUCH_MODALITY = "ZZ"


@dataclass
class Facts:
    """What the queries found out, for the checks that come after them."""

    #: The Q/R FIND models the PACS accepted.
    accepted_models: set[str] = field(default_factory=set)
    #: The model the queries went through (None: none worked).
    find_model: str | None = None
    #: The top-level search (STUDY; PATIENT in Patient Root) and its outcome.
    broad: FindOutcome | None = None
    broad_query: Dataset | None = None
    study: Dataset | None = None
    series: Dataset | None = None
    instances: list[Dataset] = field(default_factory=list)
    #: Every answer whose names the charset check reads.
    answers: list[Dataset] = field(default_factory=list)
    empty_pending: int = 0

    @property
    def patient_root(self) -> bool:
        return self.find_model == contexts.PATIENT_FIND_MODEL

    @property
    def patient_id(self) -> str:
        return str(self.study.get("PatientID", "")) if self.study is not None else ""


def _find(session: Session, facts: Facts, model: str, query: Dataset, *,
          cap: int = BROAD_CAP, seconds: float = BROAD_SECONDS) -> FindOutcome:
    with session.association([build_context(model)]) as assoc:
        outcome = session.find(assoc, model, query, cap=cap, seconds=seconds)
    facts.empty_pending += outcome.empty
    return outcome


def _status(outcome: FindOutcome) -> str:
    if outcome.status is None:
        return "no answer (timed out or aborted)" if not outcome.capped else "cancelled"
    return f"0x{outcome.status:04X}"


# -- models and the broad search ----------------------------------------------------------------


def check_queries(session: Session, facts: Facts) -> Finding:
    """Which models answer a broad search; the first that does is used from then on."""
    allowed = {"auto": contexts.FIND_MODELS, "study": contexts.FIND_MODELS[:1],
               "patient": contexts.FIND_MODELS[1:]}[session.node.query_model]
    names = {str(contexts.FIND_MODEL): "Study Root",
             str(contexts.PATIENT_FIND_MODEL): "Patient Root"}
    accepted = [model for model in contexts.FIND_MODELS if model in facts.accepted_models]
    offered = ", ".join(names[model] for model in accepted) or "none"
    candidates = [model for model in allowed if model in facts.accepted_models]
    if not candidates:
        return Finding(
            "Q/R models", "failed", f"FIND models accepted: {offered}",
            "the gateway cannot search this PACS: no Query/Retrieve FIND model it may use "
            "was accepted" + (" (query_model limits it)" if accepted else ""),
            setting="query_model", value="auto" if accepted else None, blocking=True)
    refusals: list[str] = []
    for model in candidates:
        outcome, query = _broad(session, facts, model)
        if _answers(outcome):
            facts.find_model, facts.broad, facts.broad_query = model, outcome, query
            break
        refusals.append(f"{names[model]} search ended with {_status(outcome)}")
    if facts.find_model is None:
        return Finding("Q/R models", "failed", f"FIND models accepted: {offered}; "
                       + "; ".join(refusals),
                       "the gateway cannot search this PACS", blocking=True)
    used = names[facts.find_model]
    if refusals and session.node.query_model == "auto":
        return Finding("Q/R models", "quirk", f"accepted: {offered}; " + "; ".join(refusals),
                       f"the PACS accepts Study Root but answers only in {used}",
                       setting="query_model", value="patient")
    meaning = ("searches go through Study Root" if not facts.patient_root else
               "Patient Root only: searches below PATIENT level go patient by patient "
               "(the gateway does this by itself)")
    return Finding("Q/R models", "ok" if not facts.patient_root else "quirk",
                   f"FIND models accepted: {offered}", meaning,
                   setting="query_model", value=session.node.query_model)


def _answers(outcome: FindOutcome) -> bool:
    return outcome.succeeded or (outcome.status == _OUT_OF_RESOURCES and bool(outcome.matches))


def _broad(session: Session, facts: Facts, model: str) -> tuple[FindOutcome, Dataset]:
    """The top-level search of ``model``; fills in the first study on the way."""
    if model == contexts.PATIENT_FIND_MODEL:
        query = Dataset()
        query.QueryRetrieveLevel = "PATIENT"
        query.PatientID = ""
        query.PatientName = ""
        query.NumberOfPatientRelatedStudies = ""
        outcome = _find(session, facts, model, query)
        facts.answers += outcome.matches
        patients = [str(match.get("PatientID", "")) for match in outcome.matches]
        for patient_id in [p for p in patients if p][:3]:
            studies = _find(session, facts, model, _study_query(patient_id), cap=50)
            facts.answers += studies.matches
            if _pick_study(facts, studies.matches):
                break
        return outcome, query
    query = _study_query(None)
    outcome = _find(session, facts, model, query)
    facts.answers += outcome.matches
    _pick_study(facts, outcome.matches)
    return outcome, query


def _study_query(patient_id: str | None) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.StudyDate = ""
    query.PatientID = patient_id or ""
    query.PatientName = ""
    query.StudyDescription = ""
    query.ModalitiesInStudy = ""
    query.NumberOfStudyRelatedInstances = ""
    return query


def _pick_study(facts: Facts, matches: Sequence[Dataset]) -> bool:
    """The first study with a UID; one of two or more instances if there is one
    (the C-CANCEL check needs a second instance to see whether the PACS stops)."""
    with_uid = [match for match in matches if str(match.get("StudyInstanceUID", ""))]
    several = [match for match in with_uid if _count(match, "NumberOfStudyRelatedInstances") > 1]
    chosen = several or with_uid
    if chosen:
        facts.study = chosen[0]
    return bool(chosen)


def _count(dataset: Dataset, keyword: str) -> int:
    try:
        return int(dataset.get(keyword, 0) or 0)
    except (TypeError, ValueError):
        return 0


# -- levels -------------------------------------------------------------------------------------


def check_levels(session: Session, facts: Facts) -> Finding:
    """SERIES under the first study, IMAGE under its smallest series."""
    model = facts.find_model
    if model is None or facts.study is None:
        return Finding("query levels", "skipped", "no study found to look into",
                       "series and instance searches were not tried")
    study_uid = str(facts.study.StudyInstanceUID)
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.Modality = ""
    query.SeriesNumber = ""
    query.NumberOfSeriesRelatedInstances = ""
    _add_patient(query, facts)
    series = _find(session, facts, model, query, cap=_INSTANCES_CAP)
    facts.answers += series.matches
    found = [match for match in series.matches if str(match.get("SeriesInstanceUID", ""))]
    if not found:
        return Finding("query levels", "failed",
                       f"SERIES search under a study: {len(series.matches)} matches, "
                       f"{_status(series)}",
                       "the PACS does not list the series of a study: WADO-RS and series "
                       "searches will fail")
    facts.series = min(found, key=lambda match: _count(match, "NumberOfSeriesRelatedInstances")
                       or 1_000_000)
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = str(facts.series.SeriesInstanceUID)
    query.SOPInstanceUID = ""
    query.SOPClassUID = ""
    query.InstanceNumber = ""
    query.AvailableTransferSyntaxUID = ""
    _add_patient(query, facts)
    instances = _find(session, facts, model, query, cap=_INSTANCES_CAP)
    facts.instances = [match for match in instances.matches
                       if str(match.get("SOPInstanceUID", ""))]
    if not facts.instances:
        return Finding("query levels", "failed",
                       f"IMAGE search under a series: {len(instances.matches)} matches, "
                       f"{_status(instances)}",
                       "the PACS does not list the instances of a series: WADO-RS metadata "
                       "and instance searches will fail")
    return Finding("query levels", "ok", "STUDY, SERIES and IMAGE levels answer",
                   "searches at every level work under their parent UIDs")


def _add_patient(query: Dataset, facts: Facts) -> None:
    if facts.patient_root:
        query.PatientID = facts.patient_id


# -- match limit --------------------------------------------------------------------------------


def check_match_limit(session: Session, facts: Facts) -> Finding:
    broad = facts.broad
    if broad is None or facts.find_model is None:
        return Finding("match limit", "skipped", "no search answered", "not checked")
    level = "patient" if facts.patient_root else "study"
    count = len(broad.matches)
    if broad.capped:
        return Finding("match limit", "ok", f"more than {count} {level} matches, no limit hit",
                       "no match limit below that", setting="max_matches",
                       value=session.node.max_matches)
    if broad.status == _OUT_OF_RESOURCES:
        return Finding("match limit", "quirk",
                       f"a broad {level} search ended with 0xA700 (out of resources) after "
                       f"{count} matches",
                       f"the PACS stops at {count} matches: broad searches are split by date "
                       "so that none hits it, and one that still does returns what came with "
                       "a Warning", setting="max_matches", value=count)
    if broad.status != 0x0000:
        return Finding("match limit", "failed",
                       f"a broad {level} search ended with {_status(broad)} after {count} "
                       "matches", "the PACS fails broad searches; narrow ones may work")
    if not facts.patient_root and count >= 2 and facts.broad_query is not None:
        more = _count_by_halves(session, facts, broad.matches)
        if more is not None and more > count:
            return Finding("match limit", "quirk",
                           f"a broad study search ended with Success after {count} matches, "
                           f"but its two halves by StudyDate found {more}",
                           f"the PACS silently stops at {count} matches: broad searches are "
                           "split by date so that none hits it",
                           setting="max_matches", value=count)
    if count >= 100 and count % 100 == 0:
        return Finding("match limit", "quirk",
                       f"a broad {level} search ended with Success after exactly {count} "
                       "matches", f"a round number: likely a match limit of {count}",
                       setting="max_matches", value=count)
    return Finding("match limit", "ok", f"a broad {level} search returned all {count} "
                   "matches", "no match limit seen", setting="max_matches",
                   value=session.node.max_matches)


def _count_by_halves(session: Session, facts: Facts, matches: Sequence[Dataset]) -> int | None:
    """Matches of the broad search split in two StudyDate ranges; more than the whole
    search returned proves a silent limit. None when the dates cannot be split."""
    dates = sorted({day for day in map(_date, matches) if day is not None})
    if len(dates) < 2 or facts.find_model is None or facts.broad_query is None:
        return None
    pivot = dates[(len(dates) - 1) // 2]
    total = 0
    for span in (f"-{pivot:%Y%m%d}", f"{pivot + timedelta(days=1):%Y%m%d}-"):
        query = Dataset()
        query.update(facts.broad_query)
        query.StudyDate = span
        outcome = _find(session, facts, facts.find_model, query)
        if outcome.capped:
            return None
        total += len(outcome.matches)
    return total


def _date(match: Dataset) -> date | None:
    text = str(match.get("StudyDate", "") or "").strip()
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 else None
    except ValueError:
        return None


# -- relational queries -------------------------------------------------------------------------


def check_relational(session: Session, facts: Facts) -> Finding:
    """A SERIES search without the StudyInstanceUID (PS3.4 C.4.1.2.2: relational)."""
    if facts.find_model is None or facts.series is None:
        return Finding("relational queries", "skipped", "no series found to search for",
                       "not checked", setting="relational")
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = ""
    query.SeriesInstanceUID = str(facts.series.SeriesInstanceUID)
    query.Modality = ""
    _add_patient(query, facts)
    outcome = _find(session, facts, facts.find_model, query, cap=1)
    if outcome.matches:
        return Finding("relational queries", "ok",
                       "a SERIES search without the StudyInstanceUID answers",
                       "searches for series or instances across studies go to the PACS as they "
                       "are", setting="relational",
                       value="auto" if session.node.relational is None else session.node.relational)
    said = "no match" if outcome.status == 0x0000 else _status(outcome)
    return Finding("relational queries", "quirk",
                   f"a SERIES search without the StudyInstanceUID: {said}",
                   "hierarchical only: the gateway walks study by study, series by series "
                   "for searches across studies (slower, more C-FINDs)",
                   setting="relational", value=False)


# -- matching keys ------------------------------------------------------------------------------


def check_matching(session: Session, facts: Facts) -> Finding:
    """Searches on a description and a modality no study has must come back empty."""
    if facts.find_model is None:
        return Finding("matching keys", "skipped", "no search answered", "not checked",
                       setting="post_filter")
    verdicts: list[str] = []
    ignored: list[str] = []
    for keyword, value in (("StudyDescription", NO_SUCH_DESCRIPTION),
                           ("ModalitiesInStudy", NO_SUCH_MODALITY)):
        query = _study_query(facts.patient_id if facts.patient_root else None)
        setattr(query, keyword, value)
        outcome = _find(session, facts, facts.find_model, query, cap=5)
        if outcome.matches:
            ignored.append(keyword)
            more = "+" if outcome.capped else ""
            verdicts.append(f"{keyword}: ignored ({len(outcome.matches)}{more} matches for a "
                            "value no study has)")
        elif outcome.status == 0x0000:
            verdicts.append(f"{keyword}: honoured")
        else:
            verdicts.append(f"{keyword}: refused ({_status(outcome)})")
    if ignored:
        return Finding("matching keys", "quirk", "; ".join(verdicts),
                       "the PACS returns studies that do not match: the gateway checks each "
                       "match against the search itself (keep post_filter on)",
                       setting="post_filter", value=True)
    honoured = all(verdict.endswith("honoured") for verdict in verdicts)
    return Finding("matching keys", "ok" if honoured else "failed", "; ".join(verdicts),
                   "the PACS filters by these keys (post_filter costs little; keep it on)",
                   setting="post_filter", value=session.node.post_filter)


# -- what came back -----------------------------------------------------------------------------


def check_empty_pending(session: Session, facts: Facts) -> Finding:
    if facts.empty_pending:
        return Finding("empty Pending responses", "quirk",
                       f"{facts.empty_pending} Pending C-FIND responses carried no identifier",
                       "the gateway skips them (and counts them); they are not matches")
    return Finding("empty Pending responses", "ok", "every Pending response carried a match",
                   "nothing to skip")


def check_charset(session: Session, facts: Facts) -> Finding:
    verdict = judge_charset(facts.answers)
    declared = "\\".join(verdict.declared) if verdict.declared else "none"
    seen = f"{verdict.non_ascii} of {verdict.values} text values non-ASCII; (0008,0005): {declared}"
    current = session.node.fallback_charset
    if not verdict.values:
        return Finding("character set", "skipped", "no text values came back",
                       "nothing to judge", setting="fallback_charset", value=current)
    if not verdict.non_ascii:
        return Finding("character set", "ok", seen,
                       "plain ASCII: nothing to tell which set other text would be in",
                       setting="fallback_charset", value=current)
    if verdict.decodes:
        return Finding("character set", "ok", seen + ", which decodes them",
                       "the PACS declares its character set correctly",
                       setting="fallback_charset", value=current)
    if verdict.guess is None:
        return Finding("character set", "failed", seen + ", which does not decode them",
                       "no known character set reads them: names may show replacement "
                       "characters", setting="fallback_charset")
    what = "omits it" if not verdict.declared else "declares one that does not fit"
    return Finding("character set", "quirk",
                   f"{seen}, which does not decode them; they read as {verdict.guess}",
                   f"the PACS {what}: text without a usable character set is decoded "
                   f"with the fallback", setting="fallback_charset", value=verdict.guess)


def retrieve_identifier(facts: Facts, level: str, *, patient_root: bool) -> Dataset:
    """The identifier of the first study (STUDY), its smallest series (SERIES) or the
    first instance of that series (IMAGE); with the Patient ID in Patient Root."""
    assert facts.study is not None
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    if patient_root:
        identifier.PatientID = facts.patient_id
    identifier.StudyInstanceUID = str(facts.study.StudyInstanceUID)
    if level in ("SERIES", "IMAGE") and facts.series is not None:
        identifier.SeriesInstanceUID = str(facts.series.SeriesInstanceUID)
    if level == "IMAGE" and facts.instances:
        identifier.SOPInstanceUID = str(facts.instances[0].SOPInstanceUID)
    return identifier
