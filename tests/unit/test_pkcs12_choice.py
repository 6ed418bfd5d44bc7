"""``bundle_profile.chosen``, the one rule for the profile a bundle is built in (single and bulk
download alike): the download's ask, else the certificate's own, else the tenant's default
(mutation pass: the ask could lose to the certificate's profile unnoticed)."""

from __future__ import annotations

import pytest

from ca.bundle_profile import chosen
from ca.errors import InvalidInput
from ca.x509.pkcs12 import Profile

C, M = "compat", "modern"


@pytest.mark.parametrize(("asked", "issued", "tenant", "built"), [
    (M, C, C, Profile.MODERN),  # the ask wins over the certificate's and the tenant's
    (C, M, M, Profile.COMPAT),
    (M, None, C, Profile.MODERN),
    (None, M, C, Profile.MODERN),  # else the certificate's own
    (None, C, M, Profile.COMPAT),
    (None, None, M, Profile.MODERN),  # else the tenant's default
    (None, None, C, Profile.COMPAT),
])
def test_the_ask_then_the_certificates_then_the_tenants(
        asked: str | None, issued: str | None, tenant: str, built: Profile) -> None:
    assert chosen(asked, issued=issued, tenant=tenant) is built


def test_an_unknown_ask_is_refused_whatever_the_certificate_holds() -> None:
    with pytest.raises(InvalidInput, match="PKCS#12 profile 'legacy' is not compat or modern"):
        chosen("legacy", issued=M, tenant=C)
