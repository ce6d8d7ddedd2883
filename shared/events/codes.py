"""Code lists of the product contract (spec section 2). Pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# 2.1 Notifier categories (DST table UND1): code -> (Danish label, professional?)
NOTIFIERS: Final[dict[str, tuple[str, bool]]] = {
    "1": ("Anden kommune / anden kommunal forvaltning", True),
    "2": ("Skole eller anden uddannelse", True),
    "3": ("Dagpleje, daginstitution, SFO, klub", True),
    "4": ("Sundhedsvæsenet (hospital, læge, psykiatri)", True),
    "5": ("Sundhedsplejerske eller tandlæge", True),
    "6": ("Politi eller domstol", True),
    "7": ("Familie, barnet selv eller bekendte (til og med 2023)", False),
    "8": ("Anonym", False),
    "9": ("Anbringelsessted", True),
    "10": ("Foreninger, frivillige organisationer, krise-, misbrugs- og asylcentre", True),
    "11": ("Andre", False),
    "12": ("Barnet selv (fra 2024)", False),
    "13": ("Familie eller bekendte (fra 2024)", False),
    "99": ("Uoplyst", False),
}

# 2.2 Reasons
REASONS: Final[dict[str, str]] = {
    "barn_misbrug": "Barnets misbrug",
    "barn_kriminalitet": "Barnets kriminalitet",
    "barn_skole": "Barnets skolegang",
    "barn_adfaerd": "Barnets adfærd",
    "barn_funktionsevne": "Barnets funktionsevne",
    "barn_sundhed": "Barnets sundhed",
    "foraeldre_misbrug": "Forældres misbrug",
    "foraeldre_kriminalitet": "Forældres kriminalitet",
    "foraeldre_adfaerd": "Forældres adfærd",
    "foraeldre_funktionsevne": "Forældres funktionsevne",
    "foraeldre_sundhed": "Forældres sundhed",
    "overgreb_foraeldre": "Overgreb fra forældre",
    "overgreb_andre": "Overgreb fra andre",
    "omsorgssvigt": "Omsorgssvigt",
    "vold_konflikt": "Vold eller konflikt i hjemmet",
    "utilstraekkelig_omsorg": "Utilstrækkelig omsorg",
    "hjemloeshed": "Hjemløshed",
    "andet": "Andet",
}
ABUSE_REASONS: Final[frozenset[str]] = frozenset({"overgreb_foraeldre", "overgreb_andre"})

# 2.3 Severity
SEVERITIES: Final[dict[str, str]] = {
    "akut": "Akut",
    "alvorlig": "Alvorlig",
    "bekymring": "Bekymring",
    "ukendt": "Ukendt",
}

ASSESSMENT_DECISIONS: Final[dict[str, str]] = {
    "ingen_videre": "Ingen videre handling",
    "afdaekning": "Afdækning",
    "boernefaglig_undersoegelse": "Børnefaglig undersøgelse",
    "akut_indsats": "Akut indsats",
    "eksisterende_sag": "Eksisterende sag",
}

INVESTIGATION_KINDS: Final[dict[str, str]] = {
    "screening": "Screening",
    "afdaekning": "Afdækning",
    "boernefaglig_undersoegelse": "Børnefaglig undersøgelse",
}


@dataclass(frozen=True, slots=True)
class MeasureType:
    code: str
    step: int
    placement: bool
    label: str


# 2.4 The intervention staircase (indsatstrappen)
DEFAULT_MEASURE_TYPES: Final[dict[str, MeasureType]] = {
    m.code: m
    for m in (
        MeasureType("raadgivning", 1, False, "Rådgivning og tidlig familiestøtte"),
        MeasureType("stoette_i_hjemmet", 2, False, "Støtte i hjemmet"),
        MeasureType("familiebehandling", 3, False, "Familiebehandling"),
        MeasureType("netvaerksanbringelse", 4, True, "Netværksanbringelse"),
        MeasureType("plejefamilie", 5, True, "Plejefamilie"),
        MeasureType("eget_vaerelse", 5, True, "Eget værelse, kollegie"),
        MeasureType("opholdssted", 6, True, "Opholdssted"),
        MeasureType("doegninstitution", 6, True, "Døgninstitution"),
    )
}
FOSTER_FAMILY_TYPES: Final[frozenset[str]] = frozenset({"plejefamilie", "netvaerksanbringelse"})

MUNICIPALITY_CODE_PATTERN: Final[str] = r"^[0-9]{3}$"


def is_professional(notifier: str, override: bool | None) -> bool:
    """Whether a notifier counts as professional: the record's override wins, else the code table."""
    if override is not None:
        return override
    return NOTIFIERS[notifier][1]
