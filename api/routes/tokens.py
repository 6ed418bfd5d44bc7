"""API tokens: list and revoke (``tegata token list | revoke``), and a token revoking itself.

Who may: an operator lists and revokes any token; a tenant's admin only its tenant's (an
operator's token, or another tenant's, answers 404 as if absent). Any token may revoke
itself (``POST /api/v1/whoami/revoke``): it can only take access away, and a client that
finds its token leaked can stop it without waiting for an admin. A token's text is never
answered: it was shown once, when made, and only its hash is kept. Tokens are made on the
host (``tegata token create``), where the first one has to come from anyway.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from api.auth import requires
from api.problems import responses
from api.routes.tenants import actor_of, principal_of, service_of
from api.schemas import TokenOut
from ca import present, tokens

router = APIRouter(prefix="/api/v1", tags=["tokens"])



def _token_id(value: object) -> object:
    """Plain ASCII digits without a leading zero, before int() would take " 5", "+5",
    "05" or "5_0" (a well-formed id past the table's range answers 404 as absent)."""
    if isinstance(value, str) and not tokens.is_id(value):
        raise PydanticCustomError("token_id", tokens.not_an_id(value))
    return value


TokenId = Annotated[int, BeforeValidator(_token_id), Path(ge=1, description="the token's id")]


@router.get("/tokens", dependencies=[requires("operator")], response_model=list[TokenOut],
            responses=responses(401, 403))
def list_tokens(request: Request) -> list[dict[str, object]]:
    """Every token, the operators' and every tenant's: name, role, scope, expiry,
    revocation, last use; never a token's text."""
    return [present.token(v) for v in service_of(request).tokens.list_tokens()]


@router.post("/tokens/{token_id}/revoke", dependencies=[requires("operator")],
             response_model=TokenOut, responses=responses(400, 401, 403, 404))
def revoke_any_token(request: Request, token_id: TokenId) -> dict[str, object]:
    """Stop any token working at once; revoking a revoked token changes nothing."""
    service = service_of(request)
    service.tokens.revoke(token_id, actor=actor_of(request))
    return present.token(service.tokens.get(token_id))


@router.get("/tenants/{tenant}/tokens", dependencies=[requires("operator", "admin")],
            response_model=list[TokenOut], responses=responses(400, 401, 403, 404))
def list_tenant_tokens(request: Request, tenant: str) -> list[dict[str, object]]:
    """The tenant's tokens (admins, users, gateways); never a token's text."""
    return [present.token(v) for v in service_of(request).tokens.list_tokens(tenant=tenant)]


@router.post("/tenants/{tenant}/tokens/{token_id}/revoke",
             dependencies=[requires("operator", "admin")], response_model=TokenOut,
             responses=responses(400, 401, 403, 404))
def revoke_tenant_token(request: Request, tenant: str, token_id: TokenId) -> dict[str, object]:
    """Stop one of the tenant's tokens working at once (a leaked one, say)."""
    service = service_of(request)
    service.tokens.revoke(token_id, tenant=tenant, actor=actor_of(request))
    return present.token(service.tokens.get(token_id, tenant=tenant))


@router.post("/whoami/revoke", dependencies=[requires("operator", "admin", "user", "gateway")],
             response_model=TokenOut, responses=responses(401))
def revoke_own_token(request: Request) -> dict[str, object]:
    """Revoke the token this request is made with: every later request with it is
    refused (401)."""
    service = service_of(request)
    token_id = principal_of(request).token_id
    service.tokens.revoke(token_id, actor=actor_of(request))
    return present.token(service.tokens.get(token_id))
