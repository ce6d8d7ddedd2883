"""The 98 Danish municipalities: DST kommunekode, name and an approximate child population.

`children` is the number of residents aged 0-17, rounded to the nearest hundred. These are
APPROXIMATIONS, not official figures: they were estimated from Danmarks Statistik's population
table FOLK1A (about 2024: total population per municipality times the municipality's approximate
share of 0-17 year-olds; the national sum is about 1.15 million, DST reports about 1.16 million).
They serve one purpose only: to size each municipality's synthetic record stream roughly in
proportion to its children (so København gets about 9% of the national volume, Læsø almost none).
Do not use them as statistics.

Christiansø (code 411) is not a municipality and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Municipality:
    code: str  # DST kommunekode, three digits
    name: str
    children: int  # approximate residents aged 0-17 (see the module docstring)


_TABLE: Final[tuple[tuple[str, str, int], ...]] = (
    # Region Hovedstaden
    ("101", "København", 105_000),
    ("147", "Frederiksberg", 18_000),
    ("151", "Ballerup", 10_000),
    ("153", "Brøndby", 9_000),
    ("155", "Dragør", 3_500),
    ("157", "Gentofte", 18_000),
    ("159", "Gladsaxe", 15_000),
    ("161", "Glostrup", 4_800),
    ("163", "Herlev", 6_000),
    ("165", "Albertslund", 6_200),
    ("167", "Hvidovre", 11_000),
    ("169", "Høje-Taastrup", 12_500),
    ("173", "Lyngby-Taarbæk", 12_500),
    ("175", "Rødovre", 8_500),
    ("183", "Ishøj", 5_600),
    ("185", "Tårnby", 8_500),
    ("187", "Vallensbæk", 4_000),
    ("190", "Furesø", 9_800),
    ("201", "Allerød", 6_300),
    ("210", "Fredensborg", 8_500),
    ("217", "Helsingør", 12_500),
    ("219", "Hillerød", 11_500),
    ("223", "Hørsholm", 5_500),
    ("230", "Rudersdal", 13_500),
    ("240", "Egedal", 10_500),
    ("250", "Frederikssund", 9_500),
    ("260", "Halsnæs", 5_800),
    ("270", "Gribskov", 8_200),
    ("400", "Bornholm", 6_300),
    # Region Sjælland
    ("253", "Greve", 11_500),
    ("259", "Køge", 13_000),
    ("265", "Roskilde", 18_500),
    ("269", "Solrød", 5_600),
    ("306", "Odsherred", 5_500),
    ("316", "Holbæk", 15_000),
    ("320", "Faxe", 7_500),
    ("326", "Kalundborg", 9_300),
    ("329", "Ringsted", 7_500),
    ("330", "Slagelse", 15_500),
    ("336", "Stevns", 4_600),
    ("340", "Sorø", 6_000),
    ("350", "Lejre", 6_500),
    ("360", "Lolland", 6_500),
    ("370", "Næstved", 16_500),
    ("376", "Guldborgsund", 10_500),
    ("390", "Vordingborg", 8_000),
    # Region Syddanmark
    ("410", "Middelfart", 8_500),
    ("420", "Assens", 8_300),
    ("430", "Faaborg-Midtfyn", 10_200),
    ("440", "Kerteminde", 4_600),
    ("450", "Nyborg", 6_300),
    ("461", "Odense", 38_000),
    ("479", "Svendborg", 11_500),
    ("480", "Nordfyns", 5_800),
    ("482", "Langeland", 1_900),
    ("492", "Ærø", 900),
    ("510", "Haderslev", 11_300),
    ("530", "Billund", 6_000),
    ("540", "Sønderborg", 14_200),
    ("550", "Tønder", 7_200),
    ("561", "Esbjerg", 23_500),
    ("563", "Fanø", 600),
    ("573", "Varde", 10_300),
    ("575", "Vejen", 9_300),
    ("580", "Aabenraa", 11_800),
    ("607", "Fredericia", 10_800),
    ("621", "Kolding", 19_500),
    ("630", "Vejle", 26_000),
    # Region Midtjylland
    ("615", "Horsens", 21_000),
    ("657", "Herning", 19_000),
    ("661", "Holstebro", 12_400),
    ("665", "Lemvig", 3_800),
    ("671", "Struer", 4_200),
    ("706", "Syddjurs", 8_700),
    ("707", "Norddjurs", 6_900),
    ("710", "Favrskov", 12_000),
    ("727", "Odder", 5_300),
    ("730", "Randers", 20_000),
    ("740", "Silkeborg", 21_000),
    ("741", "Samsø", 500),
    ("746", "Skanderborg", 15_000),
    ("751", "Aarhus", 68_000),
    ("756", "Ikast-Brande", 9_300),
    ("760", "Ringkøbing-Skjern", 11_800),
    ("766", "Hedensted", 10_500),
    ("779", "Skive", 9_000),
    ("791", "Viborg", 21_000),
    # Region Nordjylland
    ("773", "Morsø", 3_700),
    ("787", "Thisted", 8_300),
    ("810", "Brønderslev", 7_800),
    ("813", "Frederikshavn", 10_500),
    ("820", "Vesthimmerlands", 7_200),
    ("825", "Læsø", 200),
    ("840", "Rebild", 6_800),
    ("846", "Mariagerfjord", 8_300),
    ("849", "Jammerbugt", 7_600),
    ("851", "Aalborg", 41_000),
    ("860", "Hjørring", 12_300),
)

MUNICIPALITIES: Final[dict[str, Municipality]] = {
    code: Municipality(code, name, children) for code, name, children in sorted(_TABLE)
}
NATIONAL_CHILDREN: Final[int] = sum(m.children for m in MUNICIPALITIES.values())


def parse_codes(text: str) -> list[str]:
    """`"101,657"` -> ["101", "657"]; `"all"` or empty -> all 98 codes. Raises ValueError."""
    text = text.strip()
    if not text or text.lower() == "all":
        return list(MUNICIPALITIES)
    codes: list[str] = []
    for part in text.split(","):
        code = part.strip()
        if code not in MUNICIPALITIES:
            raise ValueError(f"{code!r} is not a DST kommunekode of one of the 98 municipalities")
        if code not in codes:
            codes.append(code)
    return codes
