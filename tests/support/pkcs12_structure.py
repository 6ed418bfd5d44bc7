"""What a PKCS#12 file is, read from its structure (RFC 7292), not from any label of ours:
the profile (``compat`` or ``modern``, ``ca.x509.pkcs12``) whose MAC digest and encryption
algorithms it carries. Shared by the tests that judge which profile a bundle was made in."""

from __future__ import annotations

import io
import zipfile

from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12
from pyasn1.codec.der import decoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5652, rfc5958, rfc7292, rfc8018

SHA1, SHA256 = "1.3.14.3.2.26", "2.16.840.1.101.3.4.2.1"
PBE_SHA1_3DES = "1.2.840.113549.1.12.1.3"  # RFC 7292, appendix C
PBES2_SHA256_AES256 = "PBES2/1.2.840.113549.2.9/2.16.840.1.101.3.4.1.42"  # RFC 8018
# what a file of each profile is: its MAC's digest, the certificates' and the key's encryption
IS = {"compat": (SHA1, [("certificates", PBE_SHA1_3DES), ("key", PBE_SHA1_3DES)]),
      "modern": (SHA256, [("certificates", PBES2_SHA256_AES256),
                          ("key", PBES2_SHA256_AES256)])}

def _algorithm(identifier: univ.Sequence) -> str:
    oid = str(identifier["algorithm"])
    if oid != str(rfc8018.id_PBES2):
        return oid
    params, _ = decoder.decode(identifier["parameters"], asn1Spec=rfc8018.PBES2_params())
    kdf, _ = decoder.decode(params["keyDerivationFunc"]["parameters"],
                            asn1Spec=rfc8018.PBKDF2_params())
    return f"PBES2/{kdf['prf']['algorithm']}/{params['encryptionScheme']['algorithm']}"


def what_it_is(p12: bytes, password: str) -> str:
    """The profile a PKCS#12 file is made in, read from its structure (RFC 7292): the MAC's
    digest and each encrypted part's algorithm. It must also open with its password."""
    crypto_pkcs12.load_pkcs12(p12, password.encode())
    pfx, _ = decoder.decode(p12, asn1Spec=rfc7292.PFX())
    mac = str(pfx["macData"]["mac"]["digestAlgorithm"]["algorithm"])
    data, _ = decoder.decode(pfx["authSafe"]["content"], asn1Spec=univ.OctetString())
    safe, _ = decoder.decode(data, asn1Spec=rfc7292.AuthenticatedSafe())
    parts = []
    for info in safe:
        if info["contentType"] == rfc5652.id_encryptedData:
            encrypted, _ = decoder.decode(info["content"], asn1Spec=rfc5652.EncryptedData())
            parts.append(("certificates", _algorithm(
                encrypted["encryptedContentInfo"]["contentEncryptionAlgorithm"])))
        elif info["contentType"] == rfc5652.id_data:
            raw, _ = decoder.decode(info["content"], asn1Spec=univ.OctetString())
            bags, _ = decoder.decode(raw, asn1Spec=rfc7292.SafeContents())
            for bag in bags:
                if bag["bagId"] == rfc7292.id_pkcs8ShroudedKeyBag:
                    key, _ = decoder.decode(bag["bagValue"],
                                            asn1Spec=rfc5958.EncryptedPrivateKeyInfo())
                    parts.append(("key", _algorithm(key["encryptionAlgorithm"])))
    found = [name for name, (digest, encrypted) in IS.items()
             if (mac, parts) == (digest, encrypted)]
    assert found, f"a PKCS#12 file of no profile: MAC {mac}, {parts}"
    return found[0]


def opened(user_zip: bytes, login: str) -> str:
    with zipfile.ZipFile(io.BytesIO(user_zip)) as archive:
        return what_it_is(archive.read(f"{login}.p12"),
                          archive.read(f"{login}-password.txt").decode().strip())
