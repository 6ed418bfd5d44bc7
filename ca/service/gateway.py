"""The gateway's questions: the IP-restriction policy, and the authorisation sub-request.

A tenant lists its allowed networks (IPv4 and IPv6 CIDR) and picks a policy: ``ip_only``,
``cert_only``, ``ip_or_cert`` (the office network, or a certificate from anywhere) or
``ip_and_cert``. nginx asks with ``auth_request``; the answer is allow, or deny with a
reason.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy import or_, select

from ca import audit, serials, tokens
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db import queries
from ca.db.models import ApiToken, Tenant
from ca.errors import InvalidInput
from ca.service.plumbing import Database
from ca.states import State, state_of

POLICIES = ("ip_only", "cert_only", "ip_or_cert", "ip_and_cert")
MAX_NETWORKS = 1000
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, kw_only=True)
class IpPolicy:
    tenant: str
    policy: str
    networks: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Decision:
    allowed: bool
    reason: str  # why, in a word or two: "ip-allowed", "certificate-revoked", ...


def parse_networks(values: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    if len(values) > MAX_NETWORKS:
        raise InvalidInput(f"at most {MAX_NETWORKS} networks", field="networks")
    found = []
    for value in values:
        try:
            found.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise InvalidInput(f"{value[:64]!r} is not an IPv4 or IPv6 network (CIDR)",
                               field="networks") from None
    return tuple(found)


def parse_address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:192.0.2.1 is 192.0.2.1
    return address


class Gateway:
    """The IP policy and the authorisation sub-request."""

    def __init__(self, *, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    def set_ip_policy(self, tenant: str, *, policy: str, networks: list[str],
                      actor: Actor = audit.CLI_ACTOR) -> IpPolicy:
        if policy not in POLICIES:
            raise InvalidInput(f"policy {policy[:16]!r} is not one of {', '.join(POLICIES)}",
                               field="policy")
        parsed = parse_networks(networks)
        if policy != "cert_only" and not parsed:
            raise InvalidInput(f"policy {policy} needs at least one allowed network",
                               field="networks")
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            owner.ip_policy = policy
            owner.ip_networks = "\n".join(str(n) for n in parsed)
            audit.record(session, actor, Event(
                action="tenant.ip_policy", target=owner.name, tenant_id=owner.id,
                details={"policy": policy, "networks": [str(n) for n in parsed]}), now=now)
            return IpPolicy(tenant=owner.name, policy=policy,
                            networks=tuple(str(n) for n in parsed))

    def get_ip_policy(self, tenant: str) -> IpPolicy:
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            return IpPolicy(tenant=owner.name, policy=owner.ip_policy,
                            networks=tuple(n for n in owner.ip_networks.split("\n") if n))

    def authorize(self, tenant: str, *, client_ip: str, verified: str | None,
                  serial: str | None) -> Decision:
        """Whether the gateway should let this request through.

        ``verified`` is nginx's ``$ssl_client_verify`` (SUCCESS, NONE, FAILED:...), and
        ``serial`` its ``$ssl_client_serial``; nginx has checked the chain (and OCSP or the
        CRL), and Tegata checks the certificate's state in its own records as well.
        """
        policy = self.get_ip_policy(tenant)
        address = parse_address(client_ip)
        networks = parse_networks(policy.networks)
        ip_ok = address is not None and any(address in n for n in networks)
        cert_ok, cert_reason = self._certificate_ok(tenant, verified, serial)
        if policy.policy == "ip_only":
            return Decision(allowed=ip_ok, reason="ip-allowed" if ip_ok else "ip-not-allowed")
        if policy.policy == "cert_only":
            return Decision(allowed=cert_ok, reason=cert_reason)
        if policy.policy == "ip_or_cert":
            if ip_ok:
                return Decision(allowed=True, reason="ip-allowed")
            return Decision(allowed=cert_ok, reason=cert_reason)
        if not ip_ok:
            return Decision(allowed=False, reason="ip-not-allowed")
        return Decision(allowed=cert_ok, reason=cert_reason)

    def _certificate_ok(self, tenant: str, verified: str | None,
                        serial: str | None) -> tuple[bool, str]:
        if not verified or verified == "NONE":
            return False, "no-certificate"
        if verified != "SUCCESS" or not serial:
            return False, "certificate-not-verified"
        try:
            canonical = serials.canonical(serial)
        except InvalidInput:
            return False, "certificate-unknown"
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            cert = queries.certificate_or_none(session, owner, canonical)
            if cert is None:
                return False, "certificate-unknown"
            state = state_of(cert, now=self.clock.now())
        if state is State.VALID:
            return True, "certificate-valid"
        return False, f"certificate-{state.value}"

    def live_token(self, token: str) -> tuple[str, int] | None:
        """The tenant and id of the gateway token whose text is ``token`` (what an nginx
        include file written by the kit holds), if it is neither revoked nor expired."""
        now = self.clock.now()
        with self.database.reading() as session:
            row = session.execute(select(Tenant.name, ApiToken.id).join(
                Tenant, ApiToken.tenant_id == Tenant.id).where(
                ApiToken.token_hash == tokens.digest(token), ApiToken.role == "gateway",
                ApiToken.revoked_at.is_(None),
                or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))).first()
            return (row[0], row[1]) if row is not None else None
