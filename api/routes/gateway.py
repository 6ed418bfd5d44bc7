"""The authorisation sub-request for nginx ``auth_request``, and the IP-restriction policy."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import requires
from api.problems import problem, responses
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
                       **responses(401, 404),
                       403: {**responses(403)[403],
                             "description": "refused (X-Tegata-Reason says why), or not a "
                                            "gateway token"}})
def authorize(
    request: Request, tenant: str,
    client_ip: Annotated[str, Header(alias=CLIENT_IP, description="nginx's $remote_addr")] = "",
    verified: Annotated[str, Header(alias=CLIENT_VERIFY,
                                    description="nginx's $ssl_client_verify")] = "",
    serial: Annotated[str, Header(alias=CLIENT_SERIAL,
                                  description="nginx's $ssl_client_serial")] = "",
) -> Response:
    """For nginx ``auth_request``: 204 to allow, 403 with ``X-Tegata-Reason`` to refuse."""
    decision = service_of(request).gateway.authorize(
        tenant, client_ip=client_ip[:64], verified=verified[:200] or None,
        serial=serial[:80] or None)
    headers = {"X-Tegata-Reason": decision.reason, "Cache-Control": "no-store"}
    if decision.allowed:
        return Response(status_code=204, headers=headers)
    # nginx reads only the status and the header; the body is for anyone else who asks
    return problem(403, "refused", "Forbidden", f"refused: {decision.reason}",
                   headers=headers)


@router.get("/api/v1/tenants/{tenant}/ip-policy", dependencies=[requires("operator", "admin")],
            response_model=IpPolicyOut, responses=responses(400, 401, 403, 404))
def get_ip_policy(request: Request, tenant: str) -> IpPolicyOut:
    return _out(service_of(request).gateway.get_ip_policy(tenant))


@router.put("/api/v1/tenants/{tenant}/ip-policy", dependencies=[requires("operator", "admin")],
            response_model=IpPolicyOut, responses=responses(400, 401, 403, 404))
def set_ip_policy(request: Request, tenant: str, body: IpPolicyIn) -> IpPolicyOut:
    """Allowed networks (IPv4/IPv6 CIDR) and the policy combining them with certificates."""
    return _out(service_of(request).gateway.set_ip_policy(tenant, policy=body.policy,
                                                  networks=body.networks,
                                                  actor=actor_of(request)))
