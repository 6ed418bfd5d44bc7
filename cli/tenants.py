"""`tegata tenant set`: a tenant's settings (--user-download on|off, --ocsp-validity,
--upn-suffix, --p12-profile, --default-validity, --timezone). Parse, call ``ca.service``, print."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from ca import expiry, validate
from ca.errors import InvalidInput
from ca.expiry import Period
from ca.service import DEFAULT_TENANT
from ca.x509.pkcs12 import Profile
from cli.context import STATE, emit
from cli.options import JsonOpt, TenantOpt


class Switch(StrEnum):
    ON = "on"
    OFF = "off"


def tenant_set(
    user_download: Annotated[Switch | None, typer.Option(
        "--user-download", case_sensitive=False,
        help="on: users may download their own certificate (one-time links, user tokens); "
             "off: only admins can, and outstanding links are withdrawn.")] = None,
    ocsp_validity: Annotated[int | None, typer.Option(
        help="Seconds an OCSP answer is valid, 60 to 604800 (default 300). Answers are dated "
             "30 s back and nginx caches one until it expires, so a revocation reaches an "
             "nginx gateway within this minus 30 s.")] = None,
    upn_suffix: Annotated[str | None, typer.Option(
        help="DNS domain for the Windows UPN: certificates issued from now on carry the "
             "otherName UPN <login>@SUFFIX in their SAN (e.g. example.co.jp).")] = None,
    no_upn_suffix: Annotated[bool, typer.Option(
        "--no-upn-suffix", help="Remove the UPN suffix: new certificates carry no UPN.")
    ] = False,
    p12_profile: Annotated[str | None, typer.Option(
        help="compat or modern: the tenant's default PKCS#12 profile, for bundles of "
             "certificates issued without one, from the next download on.")] = None,
    default_validity: Annotated[str | None, typer.Option(
        help="How long a certificate issued without a chosen expiry lasts, an ISO 8601 "
             "period: P1Y (the default), P90D, P1Y6M, P100Y.")] = None,
    timezone: Annotated[str | None, typer.Option(
        help="The tenant's zone, an IANA name (Asia/Tokyo): where its dates are whole days "
             "(expiry dates, audit filters) unless a viewer chose another.")] = None,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Change a tenant's settings."""
    if upn_suffix is not None and no_upn_suffix:
        raise InvalidInput("give --upn-suffix or --no-upn-suffix, not both", field="upn_suffix")
    if upn_suffix == "":
        raise InvalidInput("--upn-suffix is empty; --no-upn-suffix removes the UPN suffix",
                           field="upn_suffix")
    if upn_suffix is not None:
        validate.upn_suffix(upn_suffix)  # refused before any setting changes
    if p12_profile is not None:
        Profile.parse(p12_profile)  # likewise
    if default_validity is not None:
        Period.parse(default_validity)  # likewise
    if timezone is not None:
        expiry.zone(timezone.strip())  # likewise
    if ocsp_validity is not None:
        STATE.service().ocsp.set_validity(tenant, ocsp_validity)
        emit({"tenant": tenant, "ocsp_validity_seconds": ocsp_validity}, as_json=as_json,
             text=f"tenant {tenant}: OCSP answers valid {ocsp_validity} s")
    if upn_suffix is not None or no_upn_suffix:
        upn = STATE.service().links.set_upn_suffix(tenant, None if no_upn_suffix else upn_suffix)
        emit({"tenant": upn.tenant, "upn_suffix": upn.suffix}, as_json=as_json,
             text=f"tenant {upn.tenant}: certificates issued from now on carry "
                  + (f"the UPN <login>@{upn.suffix}" if upn.suffix else "no UPN"))
    if p12_profile is not None:
        p12 = STATE.service().links.set_p12_profile(tenant, p12_profile)
        emit({"tenant": p12.tenant, "p12_profile": p12.profile.value}, as_json=as_json,
             text=f"tenant {p12.tenant}: bundles of certificates issued without a profile "
                  f"are made in {p12.profile.value}")
    if default_validity is not None:
        validity = STATE.service().hierarchy.set_default_validity(tenant, default_validity)
        emit({"tenant": tenant, "default_validity": validity}, as_json=as_json,
             text=f"tenant {tenant}: certificates issued without an expiry last {validity}")
    if timezone is not None:
        zone = STATE.service().hierarchy.set_timezone(tenant, timezone)
        emit({"tenant": tenant, "timezone": zone}, as_json=as_json,
             text=f"tenant {tenant}: dates are whole days in {zone}")
    if user_download is None:
        return
    made = STATE.service().links.set_user_download(tenant, user_download is Switch.ON)
    withdrawn = f"; {made.links_withdrawn} outstanding link(s) withdrawn" if (
        made.links_withdrawn) else ""
    emit({"tenant": made.tenant, "user_download": made.allowed,
          "links_withdrawn": made.links_withdrawn}, as_json=as_json,
         text=f"tenant {made.tenant}: users may {'' if made.allowed else 'not '}download their "
              f"own certificate{withdrawn}")
