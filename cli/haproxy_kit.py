"""`tegata gateway haproxy`: an HAProxy configuration for a tenant's gateway (CRL variant).

What HAProxy 2.6 does, measured with the real one (tests/interop/test_haproxy.py), and what
the configuration therefore says:
- it checks client certificates against ``crl-file`` (a CRL for every CA of the chain, an
  expired one refuses everyone); `tegata gateway crl-sync --haproxy-socket` replaces the CRL
  in the running process through the runtime API (``set``/``commit ssl crl-file``), so the
  runtime socket is part of the configuration;
- it has no OCSP for client certificates: the CRL is the only revocation source;
- a resumed TLS session skips every certificate check, the CRL's included. TLS 1.3 resumes
  from a ticket or from the session cache: ``no-tls-tickets`` alone leaves the cache, and
  ``tune.ssl.cachesize 0`` alone leaves tickets; it takes both;
- OpenSSL builds the client's chain through an intermediate the client sends, so with the
  root trusted a certificate of any tenant verifies: the tenant's issuing CA is pinned by
  ``ssl_c_i_dn(,0,rfc2253)``, which HAProxy prints as OpenSSL's RFC 2253 form (bytes of
  UTF-8 >= 0x80 as ``\\XX``); the pin compares its hex, so no name needs quoting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.x509.oid import NameOID

from ca.errors import InvalidInput
from ca.service import DEFAULT_TENANT
from cli import crlsync
from cli.context import STATE

# the short names OpenSSL prints (XN_FLAG_FN_SN); any other attribute is refused
_SHORT = {NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATION_NAME: "O",
          NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COUNTRY_NAME: "C",
          NameOID.LOCALITY_NAME: "L", NameOID.STATE_OR_PROVINCE_NAME: "ST",
          NameOID.DOMAIN_COMPONENT: "DC", NameOID.SERIAL_NUMBER: "serialNumber",
          NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.ORGANIZATION_IDENTIFIER:
          "organizationIdentifier", NameOID.DN_QUALIFIER: "dnQualifier",
          NameOID.TITLE: "title", NameOID.GIVEN_NAME: "GN", NameOID.SURNAME: "SN",
          NameOID.PSEUDONYM: "pseudonym", NameOID.USER_ID: "UID",
          NameOID.STREET_ADDRESS: "street", NameOID.POSTAL_CODE: "postalCode",
          NameOID.BUSINESS_CATEGORY: "businessCategory"}
_ESCAPED = ',+"\\<>;'  # RFC 2253, 2.4


def openssl_rfc2253(name: x509.Name) -> str:
    """``name`` as OpenSSL's X509_NAME_print_ex(XN_FLAG_RFC2253) prints it, which is how
    HAProxy's ``ssl_c_i_dn(,0,rfc2253)`` and nginx's ``$ssl_client_i_dn`` show it: entries
    last first (``name`` as decoded from DER, in its order); ``,+"\\<>;`` escaped with a
    backslash, and a leading ``#`` or space and a trailing space; every byte of the UTF-8
    that is >= 0x80 or a control as ``\\XX``."""
    rdns = []
    for rdn in reversed(list(name.rdns)):
        members = []
        # DN_REV reverses the name's entries, those of a multi-valued RDN included
        for attribute in reversed(list(rdn)):
            short = _SHORT.get(attribute.oid)
            if short is None or not isinstance(attribute.value, str):
                raise InvalidInput(f"the issuing CA's name has an attribute "
                                   f"({attribute.oid.dotted_string}) the kit cannot pin")
            members.append(f"{short}={_escape(attribute.value)}")
        rdns.append("+".join(members))
    return ",".join(rdns)


def _escape(value: str) -> str:
    data = value.encode("utf-8")
    out = []
    for i, byte in enumerate(data):
        char = chr(byte)
        if byte >= 0x7F or byte < 0x20:
            out.append(f"\\{byte:02X}")
        elif char in _ESCAPED or (i == 0 and char in "# ") or (i == len(data) - 1
                                                                and char == " "):
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True, kw_only=True)
class HaproxyKit:
    tenant: str
    bind: str
    server_pem: str  # certificate and key in one file, as HAProxy's crt wants
    ca_bundle: str
    crl_file: str
    runtime_socket: str
    upstream: str  # host:port
    issuer_dn: str  # openssl_rfc2253 of the tenant's issuing CA

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name == "issuer_dn":
                continue
            # HAProxy splits words on spaces, reads '#' as a comment, quotes and '\' as
            # quoting, '$' as an environment variable
            if not value or any(c in value for c in " \t\r\n#\"'\\$;{}") or any(
                    ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                raise InvalidInput(f"{name} {value[:40]!r} is empty or holds a character "
                                   "HAProxy would read as syntax", field=name)
        if "/" in self.upstream:
            raise InvalidInput(f"upstream {self.upstream[:40]!r}: give host:port (HAProxy's "
                               "server line takes no URL)", field="upstream")
        if any(ord(c) < 0x20 for c in self.issuer_dn):
            raise InvalidInput("the issuing CA's name cannot be written into an HAProxy "
                               "configuration", field="tenant")


def render(kit: HaproxyKit) -> str:
    zone = kit.tenant.replace("-", "_")
    pin = kit.issuer_dn.encode("utf-8").hex().upper()
    return "\n".join([
        f"# Tegata gateway for tenant {kit.tenant} (HAProxy, CRL variant).",
        "# Generated by `tegata gateway haproxy`. Write the CRL before the first start and keep",
        "# it fresh in the running process (HAProxy will not start without it):",
        f"#   tegata gateway crl-sync --tenant {kit.tenant} --ca-bundle {kit.ca_bundle} \\",
        f"#       --out {kit.crl_file} --haproxy-socket {kit.runtime_socket} --watch",
        "global",
        "    # the runtime API crl-sync pushes the CRL through (set/commit ssl crl-file)",
        f"    stats socket {kit.runtime_socket} mode 600 level admin",
        "    # a resumed TLS session skips the certificate checks, the CRL's included: no",
        "    # session cache here and no tickets on the bind line (TLS 1.3 resumes from either).",
        "    # The cost: every new connection is a full handshake (a signature by the gateway's",
        "    # key, the client's chain and the CRL checked again)",
        "    tune.ssl.cachesize 0",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 5s",
        "    timeout client 30s",
        "    timeout server 30s",
        "",
        f"frontend tegata_{zone}",
        f"    # only devices holding a certificate of tenant {kit.tenant}, not revoked or held",
        f"    bind {kit.bind} ssl crt {kit.server_pem} ssl-min-ver TLSv1.2 no-tls-tickets "
        f"verify required ca-file {kit.ca_bundle} crl-file {kit.crl_file}",
        "    # the CRL is checked at the handshake only, and a new CRL leaves open connections",
        "    # alone: the client's connection is closed after each response, so a revoked",
        "    # device cannot go on over a kept-alive one. The cost: a full handshake per request",
        "    option httpclose",
        "    # every tenant's issuing CA chains to the same root, and OpenSSL builds the chain",
        "    # through an issuing CA the client sends: pin this tenant's, as HAProxy prints it",
        f"    #   {kit.issuer_dn}",
        "    # (compared in hex: no quoting of the name)",
        "    http-request deny deny_status 403 unless "
        f"{{ ssl_c_i_dn(,0,rfc2253),hex -m str {pin} }}",
        "    # the verified identity, for the application behind the gateway",
        "    http-request set-header X-Client-Verify %[ssl_c_verify]",
        "    http-request set-header X-Client-Subject %[ssl_c_s_dn(,0,rfc2253)]",
        "    http-request set-header X-Client-Serial %[ssl_c_serial,hex]",
        "    http-request set-header X-Client-Fingerprint %[ssl_c_sha1,hex]",
        f"    default_backend tegata_{zone}_app",
        "",
        f"backend tegata_{zone}_app",
        f"    server app {kit.upstream}",
        "",
    ])


TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name.")]


def haproxy(
    upstream: Annotated[str, typer.Option(help="Where HAProxy passes verified requests, "
                                          "host:port, e.g. 127.0.0.1:9000.")],
    tenant: TenantOpt = DEFAULT_TENANT,
    bind: Annotated[str, typer.Option(help="HAProxy bind address.")] = ":443",
    server_pem: Annotated[str, typer.Option(help="The gateway's own TLS certificate and key, "
                                            "in one PEM file.")]
    = "/etc/haproxy/tls/server.pem",
    ca_bundle_path: Annotated[str | None, typer.Option(
        "--ca-bundle", help="Path of `tegata gateway ca-bundle` on the gateway.")] = None,
    crl_file: Annotated[str | None, typer.Option(help="Path of the CRL file (crl-sync's "
                                                 "--out).")] = None,
    runtime_socket: Annotated[str, typer.Option(help="HAProxy's runtime API socket "
                                                "(crl-sync's --haproxy-socket).")]
    = "/run/haproxy/admin.sock",
) -> None:
    """Print an HAProxy configuration for the tenant's gateway (CRL variant)."""
    service = STATE.service()
    # refused, as for nginx, when another tenant's (old) issuing CA has the same name: the
    # pin could not tell their certificates apart
    service.gateway_issuer_dn(tenant)
    issuing = x509.load_der_x509_certificate(service.ca_certificates(tenant)[1].der)
    base = f"/etc/haproxy/tegata/{tenant}"
    kit = HaproxyKit(tenant=tenant, bind=bind, server_pem=server_pem,
                     ca_bundle=ca_bundle_path or f"{base}-ca.pem",
                     crl_file=crl_file or f"{base}-crl.pem", runtime_socket=runtime_socket,
                     upstream=upstream, issuer_dn=openssl_rfc2253(issuing.subject))
    crlsync.check_haproxy_name(Path(kit.crl_file))
    typer.echo(render(kit), nl=False)
