"""Users and groups of a tenant, CSV import and export, secure-access permission."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.auth import requires
from api.problems import responses
from api.routes.tenants import actor_of, service_of
from api.schemas import GroupOut, ImportOut, PermissionIn, SelectionIn, UserIn, UserOut, UserPatch
from ca import present
from ca.errors import InvalidInput
from ca.service import Selection, UserSpec
from ca.service.selection import SEARCH_LIMIT
from ca.service.users import MAX_OFFSET, MAX_PAGE

router = APIRouter(prefix="/api/v1/tenants/{tenant}", tags=["users"])
ADMINS = requires("operator", "admin")
COMMON = (400, 401, 403, 404)
MAX_CSV_BYTES = 50 * 1024 * 1024


def selection_of(body: SelectionIn) -> Selection:
    return Selection(logins=tuple(body.logins) if body.logins is not None else None,
                     group=body.group, unaffiliated=body.unaffiliated, everyone=body.all,
                     status=body.status)


def query_selection(login: list[str] | None, group: str | None, unaffiliated: bool,
                    status: str | None, *, everyone: bool = False,
                    default_everyone: bool = True) -> Selection:
    """Selection from query parameters (``Selection.of``, as the CLI builds it)."""
    return Selection.of(logins=login, group=group, unaffiliated=unaffiliated,
                        everyone=everyone, status=status, default_everyone=default_everyone)


Logins = Annotated[list[str] | None, Query(max_length=1000)]
GroupQ = Annotated[str | None, Query(max_length=100)]
StatusQ = Annotated[str | None, Query(max_length=16,
                                      description="unissued, valid, expired, suspended, "
                                                  "revoked")]


@router.post("/users", dependencies=[ADMINS], response_model=UserOut, status_code=201,
             responses=responses(*COMMON, 409))
def add_user(request: Request, tenant: str, body: UserIn) -> dict[str, object]:
    """A new user; ``secure_access`` allows certificates to be issued to them."""
    return present.user(service_of(request).users.add(
        tenant, body.login, email=body.email, display_name=body.display_name,
        allow=body.secure_access, kind=body.kind, groups=tuple(body.groups),
        actor=actor_of(request)))


@router.get("/users", dependencies=[ADMINS], response_model=list[UserOut],
            responses=responses(*COMMON))
def list_users(request: Request, response: Response, tenant: str, login: Logins = None,
               group: GroupQ = None, unaffiliated: bool = False, status: StatusQ = None,
               q: Annotated[str | None, Query(max_length=SEARCH_LIMIT,
                                              description="login, display name or e-mail "
                                                          "holds this, ignoring case")] = None,
               limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
               offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
               ) -> list[dict[str, object]]:
    """Users by group, unaffiliated or all, and by certificate status. With ``q``,
    ``limit`` or ``offset``: one page of them (by login; ``limit`` default 1000), and the
    number of users matching in all in ``X-Total-Count``."""
    selection = query_selection(login, group, unaffiliated, status)
    users = service_of(request).users
    if q is None and limit is None and offset == 0:
        return [present.user(v) for v in users.list_users(tenant, selection)]
    views, total = users.page(tenant, selection, search=q, offset=offset,
                              limit=MAX_PAGE if limit is None else limit)
    response.headers["X-Total-Count"] = str(total)
    return [present.user(v) for v in views]


@router.get("/users.csv", dependencies=[ADMINS], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}, **responses(*COMMON)})
def export_users(request: Request, tenant: str, group: GroupQ = None,
                 unaffiliated: bool = False, status: StatusQ = None) -> StreamingResponse:
    """The users as CSV (the import's columns); no cell is a spreadsheet formula."""
    lines = service_of(request).users.export_users(
        tenant, query_selection(None, group, unaffiliated, status))
    return StreamingResponse(lines, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="users.csv"'})


@router.post("/users/import", dependencies=[ADMINS], response_model=ImportOut,
             responses=responses(*COMMON, 413),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string"}}}}})
async def import_users(request: Request, tenant: str, dry_run: bool = False,
                       best_effort: bool = False) -> dict[str, object]:
    """Create or update users from CSV (columns login, email, name, groups, secure_access,
    kind). Nothing is written if any row is bad, unless ``best_effort``."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_CSV_BYTES:
            raise InvalidInput("the CSV file is larger than 50 MB", field="file")
    report = await run_in_threadpool(service_of(request).users.import_users, tenant, bytes(data),
                                     dry_run=dry_run, best_effort=best_effort,
                                     actor=actor_of(request))
    return present.import_report(report)


@router.get("/users/{login}", dependencies=[ADMINS], response_model=UserOut,
            responses=responses(*COMMON))
def get_user(request: Request, tenant: str, login: str) -> dict[str, object]:
    return present.user(service_of(request).users.get(tenant, login))


@router.patch("/users/{login}", dependencies=[ADMINS], response_model=UserOut,
              responses=responses(*COMMON))
def update_user(request: Request, tenant: str, login: str, body: UserPatch) -> dict[str, object]:
    """Change a user; withdrawing secure access suspends their certificates, granting it
    again reinstates them."""
    spec = UserSpec(login=login, email=body.email, display_name=body.display_name,
                    kind=body.kind, secure_access=body.secure_access,
                    groups=tuple(body.groups) if body.groups is not None else None)
    return present.user(service_of(request).users.update(tenant, spec, actor=actor_of(request)))


@router.post("/users/{login}/retire", dependencies=[ADMINS], response_model=UserOut,
             responses=responses(*COMMON))
def retire_user(request: Request, tenant: str, login: str) -> dict[str, object]:
    """The user leaves: their certificates are revoked (affiliationChanged)."""
    return present.user(service_of(request).users.retire(tenant, login, actor=actor_of(request)))


@router.post("/permission", dependencies=[ADMINS], response_model=list[UserOut],
             responses=responses(*COMMON))
def set_permission(request: Request, tenant: str, body: PermissionIn) -> list[dict[str, object]]:
    """Grant or withdraw secure access for several users (all or none)."""
    views = service_of(request).users.set_permission(tenant, tuple(body.logins), allow=body.allow,
                                               actor=actor_of(request))
    return [present.user(v) for v in views]


@router.get("/groups", dependencies=[ADMINS], response_model=list[GroupOut],
            responses=responses(*COMMON))
def list_groups(request: Request, tenant: str) -> list[dict[str, object]]:
    return [present.group(n, m) for n, m in service_of(request).users.list_groups(tenant)]
