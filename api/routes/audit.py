"""The audit log: who did what, when, from where; filters and CSV/JSON export."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator
from pydantic_core import PydanticCustomError

from api.auth import requires
from api.problems import responses
from api.routes.certificates import MAX_OFFSET
from api.routes.tenants import service_of
from ca import present

router = APIRouter(prefix="/api/v1", tags=["audit"])

_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}([T ].*)?", re.DOTALL)


def _iso_moment(value: object) -> object:
    """An ISO 8601 date-time, before pydantic would read ``-376`` or ``1e9`` as seconds
    since 1970."""
    if isinstance(value, str) and not _ISO_MOMENT.fullmatch(value):
        raise PydanticCustomError("iso_moment", "{shown} is not an ISO 8601 date-time",
                                  {"shown": repr(value[:32])})
    return value


Moment = Annotated[dt.datetime, BeforeValidator(_iso_moment)]


class EventOut(BaseModel):
    id: int
    at: dt.datetime
    tenant: str | None
    actor: str
    source_ip: str | None
    action: str
    target: str
    outcome: str
    request_id: str | None
    details: dict[str, Any]


class ChainOut(BaseModel):
    tenant: str | None  # None: the operator's chain (and every event from before chains)
    events: int
    intact: bool
    broken_at: int | None
    problem: str | None
    head: str | None  # the chain's newest hash: note it elsewhere to pin the chain's state
    removed_by_retention: int
    first_kept_id: int | None


class VerifyOut(BaseModel):
    events: int
    intact: bool  # every chain
    broken_at: int | None
    problem: str | None
    removed_by_retention: int
    chains: list[ChainOut]  # the operator's first, then each tenant's


@router.get("/tenants/{tenant}/audit", dependencies=[requires("operator", "admin")],
            response_model=list[EventOut],
            responses={200: {"content": {"application/json": {}, "text/csv": {}}},
                       **responses(400, 401, 403, 404)})
def tenant_audit(
    request: Request, tenant: str,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: Moment | None = None, until: Moment | None = None,
    outcome: Annotated[Literal["success", "failure", "refused"] | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=200, description=(
        "a part of the actor or the target, in any case"))] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    timezone: Annotated[str, Query(max_length=64)] = "UTC",
) -> list[EventOut] | StreamingResponse:
    """The tenant's events, oldest first; ``format=csv`` exports every one the filters
    select, ``limit`` and ``offset`` aside (times in UTC and in ``timezone``)."""
    service = service_of(request)
    if format == "csv":
        rows = service.audit.export_csv(tenant=tenant, zone=timezone, action=action,
                                        since=since, until=until, outcome=outcome, q=q)
        return StreamingResponse(rows,
                                 media_type="text/csv; charset=utf-8", headers={
                                     "Content-Disposition": 'attachment; filename="audit.csv"'})
    events = service.audit.events(tenant=tenant, action=action, since=since, until=until,
                                  outcome=outcome, q=q, limit=limit, offset=offset)
    return [EventOut.model_validate(present.event(v)) for v in events]


@router.get("/audit", dependencies=[requires("operator")], response_model=list[EventOut],
            responses=responses(400, 401, 403))
def all_audit(request: Request, action: Annotated[str | None, Query(max_length=64)] = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
              offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> list[EventOut]:
    """Every tenant's events and the operator's own."""
    events = service_of(request).audit.events(action=action, limit=limit, offset=offset)
    return [EventOut.model_validate(present.event(v)) for v in events]


@router.get("/audit/verify", dependencies=[requires("operator")], response_model=VerifyOut,
            responses=responses(401, 403))
def verify(request: Request) -> VerifyOut:
    """Walk every hash chain (the operator's, each tenant's): a changed, removed or
    reordered event breaks it."""
    return VerifyOut.model_validate(present.audit_check(service_of(request).audit.verify()))
