"""The authorisation sub-request for nginx ``auth_request``, and the IP-restriction policy."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import requires
from api.problems import responses
from api.routes.tenants import actor_of, service_of
from ca.service.gateway import IpPolicy

router = APIRouter(tags=["gateway"])

# the headers the kit's nginx configuration sets on the sub-request; they are believed only
# because the sub-request carries the tenant's gateway token
CLIENT_IP = "x-tegata-client-ip"
CLIENT_VERIFY = "x-tegata-client-verify"
CLIENT_SERIAL = "x-tegata-client-serial"


class IpPolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: str = Field(pattern="^(ip_only|cert_only|ip_or_cert|ip_and_cert)$")
    networks: list[str] = Field(default_factory=list, max_length=1000)


class IpPolicyOut(BaseModel):
    tenant: str
    policy: str
    networks: list[str]


def _out(view: IpPolicy) -> IpPolicyOut:
    return IpPolicyOut(tenant=view.tenant, policy=view.policy, networks=list(view.networks))


@router.get("/auth/{tenant}", dependencies=[requires("gateway")], status_code=204,
            response_class=Response,
            responses={204: {"description": "let the request through"},
                       403: {"description": "refuse it; X-Tegata-Reason says why"},
                       **responses(401, 404)})
def authorize(request: Request, tenant: str) -> Response:
    """For nginx ``auth_request``: 204 to allow, 403 with ``X-Tegata-Reason`` to refuse."""
    decision = service_of(request).authorize(
        tenant, client_ip=request.headers.get(CLIENT_IP, "")[:64],
        verified=request.headers.get(CLIENT_VERIFY, "")[:200] or None,
        serial=request.headers.get(CLIENT_SERIAL, "")[:80] or None)
    status = 204 if decision.allowed else 403
    return Response(status_code=status, headers={"X-Tegata-Reason": decision.reason,
                                                 "Cache-Control": "no-store"})


@router.get("/api/v1/tenants/{tenant}/ip-policy", dependencies=[requires("operator", "admin")],
            response_model=IpPolicyOut, responses=responses(400, 401, 403, 404))
def get_ip_policy(request: Request, tenant: str) -> IpPolicyOut:
    return _out(service_of(request).get_ip_policy(tenant))


@router.put("/api/v1/tenants/{tenant}/ip-policy", dependencies=[requires("operator", "admin")],
            response_model=IpPolicyOut, responses=responses(400, 401, 403, 404))
def set_ip_policy(request: Request, tenant: str, body: IpPolicyIn) -> IpPolicyOut:
    """Allowed networks (IPv4/IPv6 CIDR) and the policy combining them with certificates."""
    return _out(service_of(request).set_ip_policy(tenant, policy=body.policy,
                                                  networks=body.networks,
                                                  actor=actor_of(request)))
