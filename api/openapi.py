"""The OpenAPI document names every status a route can answer: those the route declares, and
those the shared machinery answers for it, which are added here so no route can forget one.

- a role guard (``api.auth``): 401 no or bad token, 403 a role the route does not admit, 404
  another tenant's path (as if absent), 429 too many failed authentications
- any parameter or a body: 400 (request validation, ``problems._validation``)
- a body: 413 (the size cap of ``app.Hardening``)
- the request reaches the service, so the database: 503 when it is unavailable

FastAPI's own 422 "Validation Error" entry is dropped: validation answers 400 here, and 422
means a rule forbids the action (``NotPermitted``), which the routes that can say so declare.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api import problems
from api.auth import RoleGuard, declared_access

FASTAPI_VALIDATION_REF = "#/components/schemas/HTTPValidationError"


def has_body(route: APIRoute) -> bool:
    """A body the route reads: a declared model, or one it reads itself (CSV, OCSP)."""
    extra = route.openapi_extra or {}
    return route.body_field is not None or "requestBody" in extra


def reaches_service(dependant: Dependant) -> bool:
    """The endpoint or one of its dependencies takes the Request (``app.state.service``)."""
    return dependant.request_param_name is not None or any(
        reaches_service(d) for d in dependant.dependencies)


def implied_statuses(route: APIRoute) -> set[int]:
    """What the guard, validation, the size cap and storage can answer for this route."""
    statuses: set[int] = set()
    if isinstance(declared_access(route), RoleGuard):
        statuses |= {401, 403, 429}
        if "{tenant}" in route.path:
            statuses.add(404)
    dependant = route.dependant
    parameters = (dependant.path_params, dependant.query_params, dependant.header_params,
                  dependant.cookie_params)
    if has_body(route) or any(parameters):
        statuses.add(400)
    if has_body(route):
        statuses.add(413)
    if reaches_service(dependant):
        statuses.add(503)
    return statuses


def complete(document: dict[str, Any], routes: list[APIRoute]) -> None:
    """Add the implied statuses to each operation (a route's own entry wins), drop FastAPI's
    422 validation entry, and hold the problem schema once."""
    for route in routes:
        if not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            answers: dict[str, Any] = operation["responses"]
            schema = answers.get("422", {}).get("content", {}).get("application/json", {})
            if schema.get("schema", {}).get("$ref") == FASTAPI_VALIDATION_REF:
                del answers["422"]
            for status, entry in problems.responses(*sorted(implied_statuses(route))).items():
                answers.setdefault(str(status), entry)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Problem"] = copy.deepcopy(problems.PROBLEM_SCHEMA)
