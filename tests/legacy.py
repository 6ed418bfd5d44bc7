"""What earlier releases did, rebuilt for the tests that check a deployment they left behind."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ca.service import hierarchy
from ca.x509.certificate import CARequest

CURRENT_RULE = hierarchy.issuing_request


def legacy_request(tenant: str, display_name: str, root_cert: x509.Certificate,
                   public_key: ec.EllipticCurvePublicKey, *, now: dt.datetime) -> CARequest:
    """Issuing CAs as they were named before CA names were made unique: no OU, so display
    names that agree in their first 53 characters gave two tenants one CA name."""
    request = CURRENT_RULE(tenant, display_name, root_cert, public_key, now=now)
    return CARequest(common_name=request.common_name, organization=request.organization,
                     public_key=public_key, profile=request.profile, now=now)
