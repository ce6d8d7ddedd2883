"""A generated year of three municipalities at national intensity comes close to the stated targets
(`synth.targets`): volume, notifier and severity mix, repeats, assessment within 24 hours, the
funnel from underretning to case, investigation, measure and placement, caseloads, late lines."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from synth import targets as T
from synth.generator import Config, merged_lines
from synth.municipalities import MUNICIPALITIES, NATIONAL_CHILDREN
from synth.stats import Stats, measure

CFG = Config(seed=1, start=date(2025, 11, 1), municipalities=("657", "751", "461"))


@pytest.fixture(scope="module")
def stats() -> Iterator[Stats]:
    lines, _ = merged_lines(CFG)
    yield measure(lines, CFG.start, CFG.end)


def test_volume_follows_the_child_population(stats: Stats) -> None:
    share = sum(MUNICIPALITIES[m].children for m in CFG.municipalities) / NATIONAL_CHILDREN
    expected = T.NATIONAL_UNDERRETNINGER_PER_YEAR * share * CFG.scale
    assert abs(stats.received - expected) <= T.VOLUME_TOLERANCE * expected, (stats.received, expected)


@pytest.mark.parametrize("code", sorted(T.NOTIFIER_SHARES))
def test_notifier_shares(stats: Stats, code: str) -> None:
    observed = stats.share(stats.notifier, code)
    assert abs(observed - T.NOTIFIER_SHARES[code]) <= T.NOTIFIER_TOLERANCE, (code, observed)


def test_the_headline_notifiers(stats: Stats) -> None:
    """Schools about 21%, health (4 and 5) about 20%, police about 12% (DST)."""
    school = stats.share(stats.notifier, "2")
    health = stats.share(stats.notifier, "4") + stats.share(stats.notifier, "5")
    police = stats.share(stats.notifier, "6")
    assert abs(school - 0.21) <= T.NOTIFIER_TOLERANCE
    assert abs(health - 0.20) <= T.NOTIFIER_TOLERANCE
    assert abs(police - 0.12) <= T.NOTIFIER_TOLERANCE


@pytest.mark.parametrize("severity", sorted(T.SEVERITY_SHARES))
def test_severity_shares(stats: Stats, severity: str) -> None:
    observed = stats.share(stats.severity, severity)
    assert abs(observed - T.SEVERITY_SHARES[severity]) <= T.SEVERITY_TOLERANCE, (severity, observed)


def test_repeat_notifications(stats: Stats) -> None:
    assert abs(stats.per_child - T.UNDERRETNINGER_PER_CHILD) <= T.UNDERRETNINGER_PER_CHILD_TOLERANCE
    assert abs(stats.repeat_share - T.REPEAT_CHILD_SHARE) <= T.REPEAT_CHILD_SHARE_TOLERANCE


def test_assessed_within_24_hours(stats: Stats) -> None:
    assert abs(stats.assessed_share - T.ASSESSED_WITHIN_24H) <= T.ASSESSED_WITHIN_24H_TOLERANCE


@pytest.mark.parametrize(
    ("step", "target"),
    [
        ("case", T.FUNNEL_CASE),
        ("investigation", T.FUNNEL_INVESTIGATION),
        ("measure", T.FUNNEL_MEASURE),
        ("placement", T.FUNNEL_PLACEMENT),
    ],
)
def test_funnel(stats: Stats, step: str, target: float) -> None:
    assert stats.new_children > 2_000
    observed = stats.funnel_share(step)
    assert abs(observed - target) <= T.FUNNEL_TOLERANCE[step], (step, observed, target)


def test_the_funnel_narrows(stats: Stats) -> None:
    f = stats.funnel_share
    assert 1 > f("case") > f("measure") > f("placement") > 0
    assert f("case") > f("investigation") > f("placement")


def test_caseloads(stats: Stats) -> None:
    low, high = T.CASELOAD_MEAN_RANGE
    assert low <= stats.caseload_mean <= high
    assert max(stats.caseloads) <= T.CASELOAD_HIRE_AT + 5


def test_late_lines(stats: Stats) -> None:
    assert abs(stats.late_share - CFG.late_share) <= T.LATE_SHARE_TOLERANCE


def test_every_record_type_occurs(stats: Stats) -> None:
    from services.intake.domain.records import RECORD_MODELS

    assert set(stats.by_type) == set(RECORD_MODELS)
