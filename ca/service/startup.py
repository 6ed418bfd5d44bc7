"""Start-up checks: whether Tegata is initialised, and whether the CA keys are there."""

from __future__ import annotations

import contextlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)
from sqlalchemy import select

from ca.db import migrate, queries
from ca.db.engine import check_reachable
from ca.db.models import Authority, Certificate, KeyMaterial
from ca.errors import ConfigError, NotInitialized
from ca.sealing import DATA_PROTECTION_FILE
from ca.service.plumbing import PKCS11_STORE, Database, Keys
from ca.settings import Settings
from ca.signer import check_private_file


class Startup:
    """Before serving: is there a CA, is the schema current, do the CA keys load."""

    def __init__(self, *, settings: Settings, database: Database, keys: Keys) -> None:
        self.settings = settings
        self.database = database
        self.keys = keys

    def check_initialized(self) -> None:
        """For commands that need a CA: say `tegata init` when there is none yet, and touch
        nothing (an absent SQLite file is not created by asking)."""
        not_yet = NotInitialized("Tegata is not initialised")
        if self.settings.database_url is None:
            path = self.settings.data_dir / "tegata.db"
            if not path.exists():
                raise not_yet
        check_reachable(self.database.engine)
        if migrate.current_revision(self.database.engine) is None:
            raise not_yet
        self.database.check()
        if not self.is_initialized():
            raise not_yet

    def load_signers(self) -> None:
        """Check the CA keys at start-up, in time that does not grow with the tenants: the
        root's key and the data-protection key are loaded (so a wrong passphrase stops
        start-up), and every other active CA's key file must be there, private (a missing or
        world-readable file stops start-up, not a request). Those keys load on first use.
        A key in a PKCS#11 token is looked up at once: a token that is absent, a PIN that
        does not open it, a CA key it does not hold (by label and CKA_ID, as signatures
        look it up), a key that could leave it or that is not the one its CA certificate
        names stops start-up.

        The keys loaded must be the database's: each root's key is the one its certificate
        names, and the data-protection key opens the newest key material sealed in the
        database. A replica (or a restore) given another deployment's key directory stops
        here instead of signing with a key nobody trusts or sealing keys the other replicas
        cannot open."""
        with self.database.reading() as session:
            keys = session.execute(select(
                Authority.key_id, Authority.kind, Authority.key_store, Authority.key_token,
                Authority.der).where(Authority.retired_at.is_(None))).all()
            sealed = session.execute(
                select(Certificate.serial, KeyMaterial.sealed_key, KeyMaterial.sealed_password)
                .join(Certificate, Certificate.id == KeyMaterial.certificate_id)
                .where(KeyMaterial.sealed_key.is_not(None),
                       KeyMaterial.sealed_password.is_not(None))
                .order_by(KeyMaterial.certificate_id.desc()).limit(1)).first()
        in_tokens: dict[str, set[str]] = {}
        for key_id, kind, store, token, der in keys:
            if store == PKCS11_STORE:
                assert token is not None
                check_token_key(self.keys, in_tokens, key_id=key_id, token=token, kind=kind,
                                der=der, whose="the database's")
            elif kind == "root":
                signer = self.keys.signer_by_id(key_id)
                if _spki(signer.public_key()) != _spki(
                        x509.load_der_x509_certificate(der).public_key()):
                    raise ConfigError(
                        f"CA key file {self.keys.keystore.path_for(key_id)} does not hold the "
                        "key of the database's root CA (TEGATA_KEY_DIR names another "
                        "deployment's key directory?)", field="TEGATA_KEY_DIR")
            elif kind != "ocsp":  # a responder's key is sealed, or made anew if lost
                check_private_file(self.keys.keystore.path_for(key_id), what="CA key file")
        self._recheck_mismatched()
        for problem in list(self.keys.mismatched.values())[:1]:  # a key refused since
            raise ConfigError(problem, field="TEGATA_KEY_DIR")
        if keys:
            sealer = self.keys.sealer
            if sealed is not None:
                serial, sealed_key, sealed_password = sealed
                assert sealed_key is not None and sealed_password is not None  # selected so
                try:
                    sealer.open_key_material(sealed_key, sealed_password, serial=serial)
                except ConfigError:
                    path = self.settings.effective_key_dir / DATA_PROTECTION_FILE
                    raise ConfigError(
                        f"data-protection key {path} does not open the key material sealed "
                        f"in the database (certificate {serial}): TEGATA_KEY_DIR names another "
                        "deployment's key directory?", field="TEGATA_KEY_DIR") from None

    def public_base_url_drift(self) -> str | None:
        """A warning when TEGATA_PUBLIC_BASE_URL is not the base URL the newest CA was made
        with (read from its stored CRL URL): this replica would issue certificates whose OCSP
        and caIssuers URLs point elsewhere for their whole life. None when they agree, or
        when no CA has a CRL URL yet. A warning, not a refusal: moving the base URL is allowed
        (the CAs made after it take the new one)."""
        with self.database.reading() as session:
            newest = session.scalar(
                select(Authority.crl_url).where(Authority.kind.in_(("root", "issuing")),
                                                Authority.crl_url.is_not(None))
                .order_by(Authority.id.desc()).limit(1))
        if newest is None or "/crl/" not in newest:
            return None
        stored = newest.rsplit("/crl/", 1)[0]
        if stored == self.settings.public_base_url:
            return None
        return (f"TEGATA_PUBLIC_BASE_URL is {self.settings.public_base_url} but the newest CA "
                f"was made with {stored}: certificates issued here point their OCSP and "
                "caIssuers URLs at the former")

    def _recheck_mismatched(self) -> None:
        """A key refused since start-up is read again: one put right (the file restored)
        is the CA's again and the replica ready, without a request having to need it; one of
        a CA retired meanwhile no longer counts."""
        if not self.keys.mismatched:
            return
        with self.database.reading() as session:
            active = {row.key_id: row for row in session.scalars(select(Authority).where(
                Authority.key_id.in_(list(self.keys.mismatched)),
                Authority.retired_at.is_(None)))}
        for key_id in list(self.keys.mismatched):
            row = active.get(key_id)
            if row is None:
                self.keys.mismatched.pop(key_id, None)
                continue
            with contextlib.suppress(ConfigError):  # still another key: stays refused
                self.keys.signer(row)  # compared again; a match clears it

    def is_initialized(self) -> bool:
        with self.database.reading() as session:
            return queries.root(session) is not None


def check_token_key(keys: Keys, in_tokens: dict[str, set[str]], *, key_id: str, token: str,
                    kind: str, der: bytes, whose: str) -> None:
    """The token is there, the PIN opens it, the key is in it (``in_tokens``: the key ids of
    each token seen so far), and it is the key the CA certificate ``der`` names (a public key
    read each): a key pair replaced under the same label is refused."""
    if token not in in_tokens:
        keys.token(token).check()
        in_tokens[token] = keys.token(token).key_ids()
    if key_id not in in_tokens[token]:
        raise ConfigError(f"PKCS#11 token {token!r} has no CA key {key_id!r}")
    signer = keys.signer_by_id(key_id, token)
    if _spki(signer.public_key()) != _spki(x509.load_der_x509_certificate(der).public_key()):
        raise ConfigError(f"PKCS#11 token {token!r} key {key_id!r} is not the key of "
                          f"{whose} {kind} CA (the token holds another deployment's keys, or "
                          "the key pair was replaced?)", field="TEGATA_PKCS11_MODULE")


def _spki(key: CertificateIssuerPublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
