"""Users of a tenant."""

from __future__ import annotations

from ca import audit, validate
from ca.audit import Actor, Event
from ca.db import queries
from ca.db.models import User
from ca.errors import Conflict, InvalidInput
from ca.service.core import ServiceCore


class UserUseCases(ServiceCore):
    def add_user(self, tenant: str, login: str, *, email: str, display_name: str = "",
                 allow: bool = False, kind: str = "person",
                 actor: Actor = audit.CLI_ACTOR) -> None:
        validate.login(login)
        validate.email(email)
        name = validate.display_text(display_name, field="display_name")
        if kind not in ("person", "service"):
            raise InvalidInput(f"user kind {kind[:16]!r} is not person or service", field="kind")
        now = self.now()
        with self.transaction() as session:
            owner = queries.tenant(session, tenant)
            if queries.user_or_none(session, owner, login) is not None:
                raise Conflict(f"{tenant}: user {login!r} already exists", field="login")
            session.add(User(tenant_id=owner.id, login=login, login_key=login.lower(),
                             email=email, display_name=name, kind=kind, status="active",
                             secure_access=allow, created_at=now, updated_at=now))
            audit.record(session, actor, Event(action="user.create", target=f"{tenant}/{login}",
                                               tenant_id=owner.id,
                                               details={"secure_access": allow}), now=now)
