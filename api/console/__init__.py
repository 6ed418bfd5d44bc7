"""The web console: server-rendered pages for admins and the operator, served by the same app
and calling the same service layer as the API (``api.console.frame`` says what they share)."""

from __future__ import annotations

from fastapi import APIRouter

from api.console import audit, imports, settings, signin, tenants, user, users

ROUTERS: tuple[APIRouter, ...] = (
    signin.router,
    users.router,
    user.router,
    imports.router,
    settings.router,
    audit.router,
    tenants.router,
    signin.fallback,  # last: a console address no page answers
)
