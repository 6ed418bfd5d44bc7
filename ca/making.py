"""Making certificates in bulk, on every core: for each user a key (or a CSR's public key), a
signed certificate and a bundle password. No database and no sealing here: the caller seals
what comes back and records it in one short transaction (ca.service.certificates). It
imports nothing of the service (no database layer), so that a worker stays small.

A worker process signs with its own ``Signer``, loaded once from the key store the service
uses (``KeyAccess``: handed over the pool's pipe, never on a command line, never shown);
the CA key stays behind that interface as in the server itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from ca import passwords
from ca.keys import generate_client_key, private_der
from ca.profiles import Urls
from ca.signer import FileKeyStore, Signer
from ca.token import TokenAccess, TokenStore
from ca.x509.certificate import ClientRequest, build_client


@dataclass(frozen=True, kw_only=True)
class KeyAccess:
    """Where a worker process finds the issuing CA's key."""

    directory: Path
    passphrase: bytes = field(repr=False)
    source: str  # the variable the passphrase came from, for messages
    key_id: str
    token: TokenAccess | None = None  # the key is in this PKCS#11 token, not a file


@dataclass(frozen=True, kw_only=True)
class Template:
    """What every certificate of one issuance shares (picklable)."""

    issuer_der: bytes
    organization: str
    tenant: str
    not_after: dt.datetime
    now: dt.datetime
    urls: Urls
    crl_url: str
    upn_suffix: str | None
    key_type: str
    generation: int = 1  # the issuing CA's
    public_key_der: bytes | None = None  # a CSR's key: no key is made, none is handed out


@dataclass(frozen=True, kw_only=True)
class Made:
    """One user's certificate, and the key and password to bundle (None: from a CSR)."""

    cert_der: bytes
    key_der: bytes | None = field(repr=False)
    password: str | None = field(repr=False)


_SIGNERS: dict[tuple[Path, str], Signer] = {}  # in a worker: each CA key loaded once


def _signer(access: KeyAccess, certificate: bytes) -> Signer:
    found = _SIGNERS.get((access.directory, access.key_id))
    if found is None:
        if access.token is not None:  # this worker's own session, opened here
            found = TokenStore(access.token).load(access.key_id, certificate=certificate)
        else:
            found = FileKeyStore(access.directory, access.passphrase,
                                 passphrase_source=access.source).load(access.key_id)
        _SIGNERS[(access.directory, access.key_id)] = found
    return found


def make_in_worker(access: KeyAccess, template: Template,
                   whom: list[tuple[str, str]]) -> list[Made]:
    """``make`` in a worker process, with that process's signer."""
    return make(_signer(access, template.issuer_der), template, whom)


def make(signer: Signer, template: Template, whom: list[tuple[str, str]]) -> list[Made]:
    """A key, a certificate and a password for each (login, e-mail)."""
    issuer = x509.load_der_x509_certificate(template.issuer_der)
    given = None if template.public_key_der is None else \
        serialization.load_der_public_key(template.public_key_der)
    made = []
    for login, email in whom:
        key = generate_client_key(template.key_type) if given is None else None
        public_key: CertificateIssuerPublicKeyTypes
        if key is not None:
            public_key = key.public_key()
        else:
            assert isinstance(given, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
            public_key = given
        client = ClientRequest(
            login=login, organization=template.organization, email=email,
            public_key=public_key, not_after=template.not_after, now=template.now,
            tenant=template.tenant, generation=template.generation,
            upn=f"{login}@{template.upn_suffix}" if template.upn_suffix else None)
        cert = build_client(client, issuer, signer, serial=x509.random_serial_number(),
                            urls=template.urls, crl_url=template.crl_url)
        made.append(Made(cert_der=cert.public_bytes(serialization.Encoding.DER),
                         key_der=None if key is None else private_der(key),
                         password=None if key is None else passwords.generate()))
    return made


def maker(signer: Signer, access: KeyAccess, template: Template, *, pooled: bool
          ) -> partial[list[Made]]:
    """``make`` for ``parallel.stream``: in a worker (picklable, the worker's signer) when
    ``pooled``, else here with this process's signer."""
    return partial(make_in_worker, access, template) if pooled else partial(
        make, signer, template)
