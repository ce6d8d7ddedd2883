"""CPR numbers and the child pseudonym (spec section 2). Pure, no I/O.

A CPR number is `DDMMYYSSSS`, with an optional hyphen after the sixth digit on input. The date part
must exist; the century follows the CPR rule (digit 7 and the two-digit year, as implemented by
`stdnum.dk.cpr.get_birth_date`); the old modulus-11 check is NOT applied. The last digit gives the
sex: odd = boy (`D`), even = girl (`P`); an unborn child is `U`.

The pseudonym `child_id` is HMAC-SHA256 over the CPR digits (or, for an unborn child,
`"unborn:" + mother's CPR + expected birth date`) keyed with the pseudonym key, as 32 hex chars.
Nothing in this module ever puts a CPR into an exception message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date
from typing import Final

from stdnum.dk import cpr as stdnum_cpr
from stdnum.exceptions import ValidationError as StdnumValidationError

from shared.events.catalogue import ChildRef

CPR_FORM: Final[re.Pattern[str]] = re.compile(r"^([0-9]{6})-?([0-9]{4})$")
CHILD_ID_HEX_CHARS: Final[int] = 32


class CprError(ValueError):
    """A CPR number of the wrong form or with an impossible date. The message never quotes it."""


def normalize_cpr(value: str) -> str:
    """The 10 digits of a CPR number given as `DDMMYYSSSS` or `DDMMYY-SSSS`; raises CprError."""
    match = CPR_FORM.match(value)
    if match is None:
        raise CprError("must be 10 digits DDMMYYSSSS (a hyphen after the 6th digit is allowed)")
    return match.group(1) + match.group(2)


def birth_date(cpr_digits: str) -> date:
    """The birth date encoded in a normalized CPR number (century rule from digit 7 and the year),
    as `stdnum.dk.cpr.get_birth_date` reads it (its rule, written out here for ten plain digits:
    stdnum's own cleaning of the text costs more than the rest of a record's checks)."""
    if len(cpr_digits) != 10 or not cpr_digits.isascii() or not cpr_digits.isdigit():
        try:
            return stdnum_cpr.get_birth_date(cpr_digits)
        except StdnumValidationError:
            raise CprError(_NOT_A_DATE) from None
    year = int(cpr_digits[4:6])
    seventh = cpr_digits[6]
    if seventh in "5678" and year >= 58:
        year += 1800
    elif seventh in "0123" or (seventh in "49" and year >= 37):
        year += 1900
    else:
        year += 2000
    try:
        return date(year, int(cpr_digits[2:4]), int(cpr_digits[0:2]))
    except ValueError:
        raise CprError(_NOT_A_DATE) from None


_NOT_A_DATE = "the date part (DDMMYY) is not a real date under the CPR century rule"


def validate_cpr(value: str, today: date | None = None) -> str:
    """Normalized digits of a valid CPR number: right form, real birth date, not born after `today`.

    The modulus-11 check is deliberately not applied (abandoned in 2007).
    """
    digits = normalize_cpr(value)
    born = birth_date(digits)
    if today is not None and born > today:
        raise CprError("the birth date in the CPR number lies in the future")
    return digits


def sex_of(cpr_digits: str) -> str:
    """`D` (boy) for an odd last digit, `P` (girl) for an even one."""
    return "D" if int(cpr_digits[-1]) % 2 == 1 else "P"


def pseudonym(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:CHILD_ID_HEX_CHARS]


def child_id_for_cpr(key: bytes, cpr_digits: str) -> str:
    return pseudonym(key, cpr_digits)


def child_id_for_unborn(key: bytes, mother_cpr_digits: str, expected_birth: date) -> str:
    return pseudonym(key, "unborn:" + mother_cpr_digits + expected_birth.isoformat())


@dataclass(frozen=True, slots=True)
class ChildIdentity:
    """What identifies a child: a CPR number, or mother's CPR and expected birth for the unborn.

    Kept only in memory and (encrypted) in intake's vault; `repr` hides the numbers.
    """

    cpr: str | None = None
    mother_cpr: str | None = None
    expected_birth: date | None = None

    @property
    def unborn(self) -> bool:
        return self.cpr is None

    def __repr__(self) -> str:
        return "ChildIdentity(<hidden>)"

    __str__ = __repr__

    def to_ref(self, key: bytes) -> ChildRef:
        """The event-side `ChildRef`: pseudonym, sex, birth date or expected birth. No CPR."""
        if self.cpr is not None:
            return ChildRef(
                child_id=child_id_for_cpr(key, self.cpr),
                sex="D" if sex_of(self.cpr) == "D" else "P",
                birth_date=birth_date(self.cpr),
            )
        if self.mother_cpr is None or self.expected_birth is None:
            raise ValueError("an unborn child needs the mother's CPR and the expected birth date")
        return ChildRef(
            child_id=child_id_for_unborn(key, self.mother_cpr, self.expected_birth),
            sex="U",
            expected_birth=self.expected_birth,
            unborn=True,
        )

    def to_document(self) -> dict[str, str | bool]:
        """The plaintext the vault encrypts."""
        if self.cpr is not None:
            return {"cpr": self.cpr}
        assert self.mother_cpr is not None and self.expected_birth is not None
        return {
            "unborn": True,
            "mother_cpr": self.mother_cpr,
            "expected_birth": self.expected_birth.isoformat(),
        }
