"""A UPN's DER length at the edges of its forms: 127 bytes short, 128 the first long
(0x81 n), 255 the last 0x81, 256 the first 0x82 n n (mutation pass: the short form
stretched to 128 bytes, an invalid DER length, went unnoticed)."""

from __future__ import annotations

import pytest

from ca.service import Service
from tests.support.extension_sets import TENANT, add_sakura, assert_client_certificate
from tests.support.issuing import issue

LOGIN = "suzuki.hanako"  # with the "@": 14 bytes


@pytest.fixture
def sakura(service: Service) -> Service:
    return add_sakura(service)


def suffix_of(length: int) -> str:
    """A valid UPN suffix of exactly ``length`` characters, ending in ".jp"."""
    labels, left = [], length - 3
    while left > 63:  # a 62-character label and its dot
        labels.append("x" * 62)
        left -= 63
    labels.append("y" * left)
    suffix = ".".join(labels) + ".jp"
    assert len(suffix) == length, (len(suffix), length)
    return suffix


@pytest.mark.parametrize("upn_bytes", [127, 128, 255, 256])
def test_a_upn_at_the_edge_of_a_length_form_is_encoded_exactly(
        sakura: Service, upn_bytes: int) -> None:
    suffix = suffix_of(upn_bytes - len(LOGIN) - 1)
    sakura.links.set_upn_suffix(TENANT, suffix)
    (view,) = issue(sakura, LOGIN, tenant=TENANT)
    assert_client_certificate(sakura, view, upn=f"{LOGIN}@{suffix}")
