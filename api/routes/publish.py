"""Public material for relying parties: CA certificates (the AIA caIssuers URLs)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response

from api.auth import public
from api.problems import responses
from ca.errors import NotFound
from ca.service import Service

router = APIRouter(tags=["publish"])

# <name>.g<n>.crt: the CA of generation n (a rollover's), as its certificates' caIssuers say
_CERT_NAME = re.compile(r"([a-z0-9][a-z0-9-]{0,62})(?:\.g([2-9]|[1-9][0-9]{1,5}))?\.crt")
DER_CERT = "application/pkix-cert"  # RFC 2585


@router.get("/ca/{name}", dependencies=[public()], response_class=Response,
            responses={200: {"content": {DER_CERT: {}}}, **responses(404)})
def ca_certificate(request: Request, name: str) -> Response:
    """``root.crt`` or ``<tenant>.crt`` (the first generation), ``root.g<n>.crt`` or
    ``<tenant>.g<n>.crt`` (a later one, after a rollover): a CA certificate in DER."""
    match = _CERT_NAME.fullmatch(name)
    if not match:
        raise NotFound("no such CA certificate")
    service: Service = request.app.state.service
    stem, number = match.groups()
    view = service.hierarchy.ca_certificate(None if stem == "root" else stem,
                                            int(number or 1))
    return Response(view.der, media_type=DER_CERT,
                    headers={"Cache-Control": "public, max-age=86400"})
