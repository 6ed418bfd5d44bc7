"""Public material for relying parties: CA certificates (the AIA caIssuers URLs)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response

from api.auth import public
from api.problems import responses
from ca.errors import NotFound
from ca.service import Service

router = APIRouter(tags=["publish"])

_CERT_NAME = re.compile(r"([a-z0-9][a-z0-9-]{0,62})\.crt")
DER_CERT = "application/pkix-cert"  # RFC 2585


@router.get("/ca/{name}", dependencies=[public()], response_class=Response,
            responses={200: {"content": {DER_CERT: {}}}, **responses(404)})
def ca_certificate(request: Request, name: str) -> Response:
    """``root.crt`` or ``<tenant>.crt``: a CA certificate in DER."""
    match = _CERT_NAME.fullmatch(name)
    if not match:
        raise NotFound("no such CA certificate")
    service: Service = request.app.state.service
    stem = match.group(1)
    views = service.hierarchy.ca_certificates(None if stem == "root" else stem)
    return Response(views[-1].der, media_type=DER_CERT,
                    headers={"Cache-Control": "public, max-age=86400"})
