"""A certificate's key is still kept: its private key (sealed) is in ``key_material`` and has
not been purged, so a bundle can be made from it. Python and SQL forms side by side (their
agreement: tests/integration/test_rule_agreement.py)."""

from __future__ import annotations

from sqlalchemy import ColumnElement

from ca.db.models import KeyMaterial


def key_kept(material: KeyMaterial | None) -> bool:
    """The Python form, on a loaded row (``None``: the certificate never had one here)."""
    return material is not None and material.sealed_key is not None


def key_kept_filter() -> ColumnElement[bool]:
    """The SQL form, for a query joined to ``key_material``."""
    return KeyMaterial.sealed_key.is_not(None)
