"""The rule of which reasons a revocation may give: RFC 5280 (5.3.1) reason codes that
Tegata records (SPEC, "Revocation, suspension and the grace period"). ``certificateHold``
is not among them: a suspension is a hold (``ca.holds``), lifted again, never a revocation;
``removeFromCRL`` and the attribute-certificate codes have no use here.

``RevocationReason`` is the type both shells declare (the API's schema, the CLI's choices);
``REASONS`` the same list as values, which the service checks against.
"""

from __future__ import annotations

from typing import Literal, get_args

RevocationReason = Literal["unspecified", "keyCompromise", "affiliationChanged",
                           "superseded", "cessationOfOperation", "privilegeWithdrawn"]
REASONS: tuple[str, ...] = get_args(RevocationReason)
