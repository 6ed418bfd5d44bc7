"""The CRLs gateways and relying parties fetch: a tenant's, the root's, and the chain bundle
nginx and HAProxy need (RFC 5280 CRLs; DER as RFC 2585 serves them, or PEM)."""

from __future__ import annotations

import re
from email.utils import format_datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api.auth import public
from api.problems import responses
from api.routes.tenants import service_of
from ca.errors import NotFound
from ca.service import CrlView

router = APIRouter(tags=["revocation"])
DER_CRL = "application/pkix-crl"  # RFC 2585
# a tenant's name (1-63 characters, never ending in "-chain") or "root", then .g<n> (the CRL
# of its CA of generation n, a rollover's) or "-chain" (the bundle, PEM only), then the
# format: the suffixes come after the up to 63 characters of the name, never inside them
_CRL_NAME = re.compile(r"([a-z0-9][a-z0-9-]{0,62}?)(?:\.g([2-9]|[1-9][0-9]{1,5})|(-chain))?"
                       r"\.(crl|pem)")


def _crl_headers(view: CrlView) -> dict[str, str]:
    return {"Cache-Control": "public, max-age=60, no-transform",
            "Last-Modified": format_datetime(view.made_at, usegmt=True),
            "Expires": format_datetime(view.next_update, usegmt=True),
            "ETag": f'"{view.number:X}"'}


@router.get("/crl/{name}", dependencies=[public()], response_class=Response,
            responses={200: {"content": {DER_CRL: {}, "application/x-pem-file": {}}},
                       **responses(404)})
def crl(request: Request, name: str,
        format: Annotated[Literal["der", "pem"] | None, Query()] = None) -> Response:
    """``<tenant>.crl`` (DER; ``?format=pem`` for PEM), ``root.crl``, ``<tenant>.pem``,
    ``<tenant>.g<n>.crl`` (the tenant's issuing CA of generation n, after a rollover),
    ``root.g<n>.crl`` (the root of generation n, after a root rollover), and
    ``<tenant>-chain.pem``: the CRLs of the tenant's issuing CAs in service and the root's,
    which nginx and HAProxy need together (a CRL for every CA in the chain)."""
    match = _CRL_NAME.fullmatch(name)
    if not match:
        raise NotFound("no such CRL")
    stem, number, chained, suffix = match.groups()
    generation = None if number is None else int(number)
    chain = chained is not None
    if chain and suffix != "pem":
        raise NotFound("no such CRL")
    service = service_of(request)
    tenant = None if stem == "root" else stem
    if chain:
        if tenant is None:
            raise NotFound("no such CRL")
        both = service.crls.chain(tenant)
        headers = _crl_headers(both.first_to_expire)
        # changes with any of its CRLs
        headers["ETag"] = '"' + "-".join(f"{view.number:X}" for view in both.views) + '"'
        headers["Last-Modified"] = format_datetime(both.made_at, usegmt=True)
        return Response(both.pem, media_type="application/x-pem-file", headers=headers)
    # the URL names the CA: <tenant>.crl (root.crl) is the CDP of the certificates of its
    # first issuing CA (the first root) for good, whichever generation signs now
    view = service.crls.current(tenant, generation or 1)
    if suffix == "pem" or format == "pem":
        return Response(view.pem, media_type="application/x-pem-file",
                        headers=_crl_headers(view))
    return Response(view.der, media_type=DER_CRL, headers=_crl_headers(view))
