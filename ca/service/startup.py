"""Start-up checks: whether Tegata is initialised, and whether the CA keys are there."""

from __future__ import annotations

from sqlalchemy import select

from ca.db import migrate, queries
from ca.db.engine import check_reachable
from ca.db.models import Authority
from ca.errors import ConfigError, NotInitialized
from ca.service.plumbing import PKCS11_STORE, Database, Keys
from ca.settings import Settings
from ca.signer import check_private_file


class Startup:
    """Before serving: is there a CA, is the schema current, do the CA keys load."""

    def __init__(self, *, settings: Settings, database: Database, keys: Keys) -> None:
        self.settings = settings
        self.database = database
        self.keys = keys

    def check_initialized(self) -> None:
        """For commands that need a CA: say `tegata init` when there is none yet, and touch
        nothing (an absent SQLite file is not created by asking)."""
        not_yet = NotInitialized("Tegata is not initialised")
        if self.settings.database_url is None:
            path = self.settings.data_dir / "tegata.db"
            if not path.exists():
                raise not_yet
        check_reachable(self.database.engine)
        if migrate.current_revision(self.database.engine) is None:
            raise not_yet
        self.database.check()
        if not self.is_initialized():
            raise not_yet

    def load_signers(self) -> None:
        """Check the CA keys at start-up, in time that does not grow with the tenants: the
        root's key and the data-protection key are loaded (so a wrong passphrase stops
        start-up), and every other active CA's key file must be there, private (a missing or
        world-readable file stops start-up, not a request). Those keys load on first use.
        A key in a PKCS#11 token is looked up at once: a token that is absent, a PIN that
        does not open it or a CA key it does not hold stops start-up."""
        with self.database.reading() as session:
            keys = session.execute(select(
                Authority.key_id, Authority.kind, Authority.key_store, Authority.key_token
            ).where(Authority.retired_at.is_(None))).all()
        in_tokens: dict[str, set[str]] = {}
        for key_id, kind, store, token in keys:
            if store == PKCS11_STORE:  # the token is there, the PIN opens it, the key is in it
                assert token is not None
                if token not in in_tokens:
                    in_tokens[token] = self.keys.token(token).key_ids()
                if key_id not in in_tokens[token]:
                    raise ConfigError(f"PKCS#11 token {token!r} has no CA key {key_id!r}")
                if kind == "root":
                    self.keys.signer_by_id(key_id, token)
            elif kind == "root":
                self.keys.signer_by_id(key_id)
            else:
                check_private_file(self.keys.keystore.path_for(key_id), what="CA key file")
        if keys:
            _ = self.keys.sealer

    def is_initialized(self) -> bool:
        with self.database.reading() as session:
            return queries.root(session) is not None
