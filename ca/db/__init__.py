"""Tegata's storage: SQLAlchemy models and queries. Nothing here commits; ``ca.service`` does."""
