"""Distinguished names as gateways print them (pure).

nginx's ``$ssl_client_i_dn`` and ``$ssl_client_s_dn`` are OpenSSL's
``X509_NAME_print_ex(..., XN_FLAG_RFC2253)``: RDNs last to first, joined by ``,`` (``+``
inside a multi-valued RDN), OpenSSL's short names, and each value converted to UTF-8 with
every byte >= 0x80 and every control byte written ``\\XX`` (upper-case hex), the RFC 2253
specials ``, + " \\ < > ;`` preceded by a backslash, as are a leading ``#`` or space and a
trailing space (RFC 2253, 2.4; a value of one ``#`` stays bare, as OpenSSL prints it).
cryptography's ``rfc4514_string()`` differs (it leaves non-ASCII text as it is), so a pin
written from it never matches a non-ASCII name.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

# OpenSSL's short names (OBJ_nid2sn) for the attributes a Tegata name can hold
_SHORT_NAMES = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COUNTRY_NAME: "C",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.STREET_ADDRESS: "street",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.TITLE: "title",
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
}

_BACKSLASHED = frozenset(b',+"\\<>;')  # RFC 2253, 2.4


def openssl_rfc2253(name: x509.Name) -> str:
    """``name`` exactly as OpenSSL's XN_FLAG_RFC2253 prints it (nginx's ``$ssl_client_i_dn``).

    ``name`` as read from a certificate: OpenSSL prints a multi-valued RDN in its DER order,
    which a name being built need not have yet."""
    flat = [(index, attribute) for index, rdn in enumerate(name.rdns) for attribute in rdn]
    out: list[str] = []
    previous: int | None = None
    for index, attribute in reversed(flat):
        if previous is not None:
            out.append("+" if index == previous else ",")
        previous = index
        short = _SHORT_NAMES.get(attribute.oid)
        if short is None or not isinstance(attribute.value, str):
            raise ValueError(f"no RFC 2253 form for attribute {attribute.oid.dotted_string}")
        out.append(f"{short}={_value(attribute.value)}")
    return "".join(out)


def _value(text: str) -> str:
    data = text.encode("utf-8")
    out: list[str] = []
    for position, byte in enumerate(data):
        first, last = position == 0, position == len(data) - 1
        if byte >= 0x80 or byte < 0x20 or byte == 0x7F:
            out.append(f"\\{byte:02X}")
        # OpenSSL's do_buf: the last byte's flag replaces the first's (a lone "#" is bare)
        elif (byte in _BACKSLASHED or (last and byte == ord(" "))
              or (first and not last and byte in b"# ")):
            out.append("\\" + chr(byte))
        else:
            out.append(chr(byte))
    return "".join(out)
