# ruff: noqa: E501
"""Valid example records of every type (the spec's `examples/records.ndjson`, municipality 751).

Used by the OpenAPI document (one example per record type) and by the tests.
"""

from __future__ import annotations

import json
from typing import Any, Final

_EXAMPLES_NDJSON: Final[str] = r"""
{"record_id": "ex-01", "type": "UnderretningReceived", "municipality": "751", "occurred_at": "2026-10-05T08:40:00+02:00", "data": {"underretning_id": "UR-1001", "child": {"cpr": "2404194012"}, "notifier": "3", "reasons": ["barn_adfaerd", "utilstraekkelig_omsorg"], "severity": "bekymring", "team_id": "syd"}}
{"record_id": "ex-02", "type": "UnderretningAssessed", "municipality": "751", "occurred_at": "2026-10-05T13:10:00+02:00", "data": {"underretning_id": "UR-1001", "acute": false, "decision": "boernefaglig_undersoegelse"}}
{"record_id": "ex-03", "type": "ReceiptSent", "municipality": "751", "occurred_at": "2026-10-06T09:00:00+02:00", "data": {"underretning_id": "UR-1001"}}
{"record_id": "ex-04", "type": "CaseOpened", "municipality": "751", "occurred_at": "2026-10-05T14:00:00+02:00", "data": {"case_id": "S-2001", "child": {"cpr": "2404194012"}, "team_id": "syd", "underretning_id": "UR-1001"}}
{"record_id": "ex-05", "type": "CaseworkerAssigned", "municipality": "751", "occurred_at": "2026-10-05T14:05:00+02:00", "data": {"case_id": "S-2001", "caseworker_id": "sr-anna"}}
{"record_id": "ex-06", "type": "InvestigationStarted", "municipality": "751", "occurred_at": "2026-10-06T10:00:00+02:00", "data": {"case_id": "S-2001", "kind": "boernefaglig_undersoegelse"}}
{"record_id": "ex-07", "type": "ChildConversationHeld", "municipality": "751", "occurred_at": "2026-10-09T15:00:00+02:00", "data": {"case_id": "S-2001"}}
{"record_id": "ex-08", "type": "InvestigationCompleted", "municipality": "751", "occurred_at": "2026-10-30T12:00:00+01:00", "data": {"case_id": "S-2001", "kind": "boernefaglig_undersoegelse", "outcome": "indsats"}}
{"record_id": "ex-09", "type": "WaitlistEntered", "municipality": "751", "occurred_at": "2026-10-30T12:30:00+01:00", "data": {"case_id": "S-2001", "offer_type": "familiebehandling"}}
{"record_id": "ex-10", "type": "WaitlistLeft", "municipality": "751", "occurred_at": "2026-11-09T09:00:00+01:00", "data": {"case_id": "S-2001", "offer_type": "familiebehandling"}}
{"record_id": "ex-11", "type": "MeasureStarted", "municipality": "751", "occurred_at": "2026-11-09T09:00:00+01:00", "data": {"case_id": "S-2001", "measure_id": "I-3001", "measure_type": "familiebehandling", "provider": "Familiehuset Syd", "monthly_cost_dkk": 18500}}
{"record_id": "ex-12", "type": "FollowUpHeld", "municipality": "751", "occurred_at": "2026-11-16T10:00:00+01:00", "data": {"case_id": "S-2001", "measure_id": "I-3001", "next_due": "2026-12-14"}}
{"record_id": "ex-13", "type": "CaseworkerAssigned", "municipality": "751", "occurred_at": "2026-11-17T08:00:00+01:00", "data": {"case_id": "S-2001", "caseworker_id": "sr-bo"}}
{"record_id": "ex-14", "type": "UnderretningReceived", "municipality": "751", "occurred_at": "2026-11-02T11:00:00+01:00", "data": {"underretning_id": "UR-1002", "child": {"unborn": true, "expected_birth": "2027-02-01", "mother_cpr": "1208994321"}, "notifier": "4", "reasons": ["foraeldre_misbrug"], "severity": "alvorlig", "team_id": "syd"}}
{"record_id": "ex-15", "type": "UnderretningAssessed", "municipality": "751", "occurred_at": "2026-11-02T15:00:00+01:00", "data": {"underretning_id": "UR-1002", "acute": false, "decision": "afdaekning"}}
{"record_id": "ex-16", "type": "UnderretningReceived", "municipality": "751", "occurred_at": "2026-09-14T09:00:00+02:00", "data": {"underretning_id": "UR-0990", "child": {"cpr": "0112104015"}, "notifier": "6", "reasons": ["overgreb_foraeldre"], "severity": "akut", "team_id": "nord"}}
{"record_id": "ex-17", "type": "UnderretningAssessed", "municipality": "751", "occurred_at": "2026-09-14T10:00:00+02:00", "data": {"underretning_id": "UR-0990", "acute": true, "decision": "akut_indsats"}}
{"record_id": "ex-18", "type": "CaseOpened", "municipality": "751", "occurred_at": "2026-09-14T10:30:00+02:00", "data": {"case_id": "S-1990", "child": {"cpr": "0112104015"}, "team_id": "nord", "underretning_id": "UR-0990"}}
{"record_id": "ex-19", "type": "CaseworkerAssigned", "municipality": "751", "occurred_at": "2026-09-14T10:35:00+02:00", "data": {"case_id": "S-1990", "caseworker_id": "sr-carl"}}
{"record_id": "ex-20", "type": "ChildPlanMade", "municipality": "751", "occurred_at": "2026-09-14T12:00:00+02:00", "data": {"case_id": "S-1990"}}
{"record_id": "ex-21", "type": "MeasureStarted", "municipality": "751", "occurred_at": "2026-09-14T13:00:00+02:00", "data": {"case_id": "S-1990", "measure_id": "I-2990", "measure_type": "plejefamilie", "monthly_cost_dkk": 42000}}
{"record_id": "ex-22", "type": "FollowUpHeld", "municipality": "751", "occurred_at": "2026-09-28T10:00:00+02:00", "data": {"case_id": "S-1990", "measure_id": "I-2990"}}
{"record_id": "ex-23", "type": "SupervisionVisitHeld", "municipality": "751", "occurred_at": "2026-11-10T10:00:00+01:00", "data": {"case_id": "S-1990", "measure_id": "I-2990"}}
{"record_id": "ex-24", "type": "FollowUpHeld", "municipality": "751", "occurred_at": "2026-11-09T10:00:00+01:00", "data": {"case_id": "S-1990", "measure_id": "I-2990", "stable_placement_exemption": true}}
{"record_id": "ex-25", "type": "MeasureEnded", "municipality": "751", "occurred_at": "2026-11-20T10:00:00+01:00", "data": {"case_id": "S-1990", "measure_id": "I-2990", "reason": "hjemgivelse"}}
{"record_id": "ex-26", "type": "CaseClosed", "municipality": "751", "occurred_at": "2026-11-20T12:00:00+01:00", "data": {"case_id": "S-1990"}}
"""

EXAMPLE_RECORDS: Final[tuple[dict[str, Any], ...]] = tuple(
    json.loads(line) for line in _EXAMPLES_NDJSON.splitlines() if line.strip()
)


def example_per_type() -> dict[str, dict[str, Any]]:
    """The first example of each record type, in the order of the spec's table."""
    out: dict[str, dict[str, Any]] = {}
    for record in EXAMPLE_RECORDS:
        out.setdefault(record["type"], record)
    return out


def examples_ndjson() -> str:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in EXAMPLE_RECORDS) + "\n"
