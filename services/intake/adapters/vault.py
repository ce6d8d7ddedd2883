"""The CPR vault: a child's identity encrypted under the child's own key (crypto-shredding).

Each child (per municipality) gets a random 256-bit data key. The identity document (CPR, or the
unborn form's mother CPR and expected birth) is encrypted with AES-GCM under that key; the key
itself is stored wrapped (AES-GCM) with the master key derived from `settings.cpr_master_key`.
Both ciphertexts are bound to (municipality, child_id) as associated data, so rows cannot be
swapped. `forget` deletes the key row: the ciphertext stays but can never be decrypted again,
while events (which only carry the pseudonym) and all statistics stay intact.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, bindparam, delete, insert, select, update

from services.intake.adapters.tables import child_keys, children
from services.intake.domain.cpr import ChildIdentity
from shared.eventstore.store import KeyLookup, run_many

log = logging.getLogger(__name__)

_HKDF_INFO = b"intake/cpr-vault/master-key/v1"


def derive_master_key(secret: str) -> bytes:
    """The 256-bit key-wrapping key from the configured secret (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret.encode())


class ChildUnknown(LookupError):
    """No identity stored for this child in this municipality."""


class ChildForgotten(Exception):
    """The child's key was destroyed: the identity cannot be recovered."""


@dataclass(frozen=True, slots=True)
class ForgetResult:
    status: Literal["forgotten", "already_forgotten"]
    forgotten_at: str


_KNOWN = select(children.c.child_id).where(
    children.c.municipality == bindparam("m"), children.c.child_id == bindparam("child")
)
_KNOWN_MANY = KeyLookup.of([children.c.child_id], children.c.municipality, children.c.child_id)
_INSERT_CHILD = insert(children)
_INSERT_KEY = insert(child_keys)


@dataclass(frozen=True, slots=True)
class Sealed:
    """A child's identity ready to store: the `intake_children` row and the `intake_child_keys` row.
    Holds only ciphertext and the wrapped key (never the CPR in plaintext)."""

    child: dict[str, Any]
    key: dict[str, Any]

    def __repr__(self) -> str:
        return f"Sealed({self.child['municipality']}:{self.child['child_id']})"


def _aad(municipality: str, child_id: str) -> bytes:
    return f"{municipality}:{child_id}".encode()


class Vault:
    def __init__(self, master_secret: str) -> None:
        self._master = AESGCM(derive_master_key(master_secret))

    def ensure(self, conn: Connection, municipality: str, child_id: str, identity: ChildIdentity) -> bool:
        """Store the identity if the child is new here; returns whether a row was written.

        A forgotten child stays forgotten: a later record about the same child is accepted (its
        events carry only the pseudonym) but the identity is not stored again.
        """
        exists = conn.execute(_KNOWN, {"m": municipality, "child": child_id}).first()
        if exists is not None:
            return False
        self.store_many(conn, [self.seal(municipality, child_id, identity)])
        return True

    def seal(self, municipality: str, child_id: str, identity: ChildIdentity) -> Sealed:
        """The rows that store a new child's identity: encrypted under a fresh key, the key wrapped."""
        aad = _aad(municipality, child_id)
        data_key = AESGCM.generate_key(bit_length=256)
        key_nonce = os.urandom(12)
        wrapped = self._master.encrypt(key_nonce, data_key, aad)
        nonce = os.urandom(12)
        plaintext = json.dumps(identity.to_document(), separators=(",", ":")).encode()
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        return Sealed(
            child={
                "municipality": municipality,
                "child_id": child_id,
                "unborn": identity.unborn,
                "nonce": nonce,
                "ciphertext": ciphertext,
                "created_at": datetime.now(UTC).isoformat(),
                "forgotten": False,
            },
            key={
                "municipality": municipality,
                "child_id": child_id,
                "nonce": key_nonce,
                "wrapped_key": wrapped,
            },
        )

    @staticmethod
    def known(conn: Connection, municipality: str, child_ids: Iterable[str]) -> set[str]:
        """Which of the children have a row here (stored, or stored and forgotten)."""
        return {r[0] for r in _KNOWN_MANY.rows(conn, municipality, child_ids)}

    @staticmethod
    def store_many(conn: Connection, sealed: Sequence[Sealed]) -> None:
        """Write sealed identities of children that are new here (see `known`)."""
        run_many(conn, _INSERT_CHILD, [s.child for s in sealed])
        run_many(conn, _INSERT_KEY, [s.key for s in sealed])

    def reveal(self, conn: Connection, municipality: str, child_id: str) -> dict[str, Any]:
        """The decrypted identity document; ChildUnknown or ChildForgotten otherwise."""
        row = conn.execute(
            select(children).where(children.c.municipality == municipality, children.c.child_id == child_id)
        ).first()
        if row is None:
            raise ChildUnknown(child_id)
        key_row = conn.execute(
            select(child_keys).where(
                child_keys.c.municipality == municipality, child_keys.c.child_id == child_id
            )
        ).first()
        if row.forgotten or key_row is None:
            raise ChildForgotten(child_id)
        aad = _aad(municipality, child_id)
        try:
            data_key = self._master.decrypt(bytes(key_row.nonce), bytes(key_row.wrapped_key), aad)
            plaintext = AESGCM(data_key).decrypt(bytes(row.nonce), bytes(row.ciphertext), aad)
        except InvalidTag:
            log.error("vault: a child's key or identity does not decrypt (wrong master key?)")
            raise
        doc: dict[str, Any] = json.loads(plaintext)
        return doc

    def forget(self, conn: Connection, municipality: str, child_id: str, by: str) -> ForgetResult:
        """Destroy the child's key (idempotent). ChildUnknown if the child was never stored here."""
        row = conn.execute(
            select(children.c.forgotten, children.c.forgotten_at).where(
                children.c.municipality == municipality, children.c.child_id == child_id
            )
        ).first()
        if row is None:
            raise ChildUnknown(child_id)
        conn.execute(
            delete(child_keys).where(
                child_keys.c.municipality == municipality, child_keys.c.child_id == child_id
            )
        )
        if row.forgotten:
            return ForgetResult("already_forgotten", row.forgotten_at)
        at = datetime.now(UTC).isoformat()
        conn.execute(
            update(children)
            .where(children.c.municipality == municipality, children.c.child_id == child_id)
            .values(forgotten=True, forgotten_at=at, forgotten_by=by)
        )
        log.info("vault: child forgotten", extra={"municipality": municipality, "child_id": child_id})
        return ForgetResult("forgotten", at)
