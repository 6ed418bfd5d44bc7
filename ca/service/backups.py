"""Backups of a running deployment, and their restore into an empty one.

A backup holds every row of every table (found by reflection, so a column a later migration
adds is copied without a change here; the schema's revision is recorded), the files of the
key directory (the CA keys and the data-protection key, already encrypted under the CA key
passphrase, and here encrypted once more under the backup key), and the settings a restore
needs that are not secrets. The file format is ``ca.backupfile``'s.

Consistency: the rows are read in one read-only transaction, and the key files after it
began. On SQLite it is one deferred ``BEGIN``: in WAL mode its first read fixes the snapshot
every later read of it sees, while writers go on (the same guarantee as SQLite's backup API,
without copying pages a file at a time). On PostgreSQL it is one ``REPEATABLE READ, READ
ONLY`` transaction: one snapshot for every table. We chose this over ``pg_dump``: no outside
binary whose major version must match the server's, one code path and one format for both
databases, and a backup of one restores into the other (rows, not SQL text). A key file is
written before the transaction that records its CA commits and is never removed, so every
CA in the snapshot has its key among the files read after it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    Connection,
    Integer,
    MetaData,
    Table,
    bindparam,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.exc import SQLAlchemyError

from ca import audit, backupfile
from ca.audit import CLI_ACTOR, Event
from ca.clock import Clock
from ca.db import migrate
from ca.db.engine import WRITE, check_reachable
from ca.errors import ConfigError, Conflict, InvalidInput, StorageError
from ca.sealing import load_sealer
from ca.service import crls, replay
from ca.service.plumbing import PKCS11_STORE, Database, Keys
from ca.service.startup import check_token_key
from ca.settings import Settings
from ca.signer import FileKeyStore, sync_directory, write_private_file

BATCH = 1000  # rows a record holds
# the settings a restored deployment should share with the one backed up (no secrets)
KEPT_SETTINGS = ("public_base_url", "timezone", "audit_retention_days",
                 "link_validity_days", "lifecycle_interval_seconds", "smtp_host",
                 "smtp_port", "smtp_from")
# tables whose rows make a deployment: a target holding any of them is not empty (a
# migration may seed others, such as ``ocsp_sequence``)
DEPLOYMENT_TABLES = ("tenants", "authorities", "users", "certificates", "crls",
                     "api_tokens", "audit_events")
_VERSION_TABLE = "alembic_version"
# where a restore writes the key files, inside the key directory (one file system): they take
# their names only once the database has committed, so a restore killed before that leaves
# only this directory, which a retry (the database being empty) removes
STAGING = ".restore-in-progress"


@dataclass(frozen=True, kw_only=True)
class CaSummary:
    kind: str
    subject: str
    tenant: str | None
    retired: bool


@dataclass(kw_only=True)
class Contents:
    """What a backup holds, read whole and authenticated (``files``: the key directory)."""

    taken_at: dt.datetime
    revision: str
    dialect: str
    settings: dict[str, Any]
    rows: dict[str, int] = field(default_factory=dict)
    cas: list[CaSummary] = field(default_factory=list)
    ca_ders: list[bytes] = field(default_factory=list, repr=False)  # root and issuing CAs
    # the active CAs whose keys are in a PKCS#11 token: (key id, token label, kind, DER)
    token_cas: list[tuple[str, str, str, bytes]] = field(default_factory=list, repr=False)
    files: dict[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class Restored:
    """A restore's outcome: what the backup held, and settings that differ from this
    deployment's (name -> (the backup's, this one's))."""

    contents: Contents
    differing: dict[str, tuple[Any, Any]]


class Backups:
    """Take a backup while the service runs; read one; restore one into an empty deployment."""

    def __init__(self, *, settings: Settings, database: Database, keys: Keys,
                 clock: Clock) -> None:
        self.settings = settings
        self.database = database
        self.keys = keys
        self.clock = clock

    # --- taking ----------------------------------------------------------------------------

    def take(self, out: IO[bytes], key: bytes) -> Contents:
        """Write a backup of the database and the key directory to ``out``."""
        engine = self.database.engine
        check_reachable(engine)
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ",
                                       postgresql_readonly=True)
            with conn.begin():
                revision = conn.scalar(select(sql_column("version_num"))
                                       .select_from(sql_table(_VERSION_TABLE)))
                if revision is None:
                    raise ConfigError("the database has no schema yet: nothing to back up")
                contents = Contents(
                    taken_at=self.clock.now(), revision=revision,
                    dialect=engine.dialect.name, settings={
                        name: getattr(self.settings, name) for name in KEPT_SETTINGS})
                writer = backupfile.Writer(out, key)
                writer.write({"kind": "backup", "format": backupfile.VERSION,
                              "taken_at": contents.taken_at, "revision": revision,
                              "dialect": contents.dialect, "settings": contents.settings})
                for table in _tables(conn):
                    contents.rows[table.name] = _write_table(conn, table, writer)
                contents.cas = _ca_summaries(conn)
                # after the snapshot began: every CA it holds has its key file by now
                files = _key_files(self.settings.effective_key_dir)
        for name, data in files.items():
            writer.write({"kind": "file", "name": name, "data": data})
        writer.write({"kind": "end", "rows": contents.rows, "files": sorted(files)})
        writer.close()
        contents.files = files
        return contents

    # --- reading ---------------------------------------------------------------------------

    def inspect(self, source: IO[bytes], key: bytes, *, name: str) -> Contents:
        """Read the whole backup: authenticated, its structure checked, its files kept."""
        return read_contents(backupfile.read(source, key, name=name), name=name)

    # --- restoring -------------------------------------------------------------------------

    def restore(self, path: Path, key: bytes, *,
                replay_files: dict[str, bytes] | None = None) -> Restored:
        """Restore into this deployment, which must be empty (no rows, no key files): the
        schema at the backup's revision, every row and key file, then the schema brought to
        this release's and, with ``publish``, a new CRL for every active CA (numbered above
        all the backup's, and above every number made by a clock earlier than this one's
        now). With ``replay_files`` the caller replays those CRLs next (``Replay.replay``
        with ``everyone``, or ``publish`` if that fails), so that no CRL is made before
        their floors are known; each must be signed by a CA of the backup, checked here
        before anything is changed. The backup is read whole once before anything is
        changed."""
        name = str(path)
        with path.open("rb") as handle:
            contents = self.inspect(handle, key, name=name)
        if contents.revision not in migrate.known_revisions():
            raise ConfigError(f"{name}: its schema revision {contents.revision} is not one "
                              "this release knows (a backup of a newer release)")
        self._check_empty()
        self._check_passphrase(contents, name=name)
        self._check_tokens(contents)
        if replay_files:
            replay.check_signed(replay_files, contents.ca_ders)
        engine = self.database.engine
        if self.settings.database_url is None:
            self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        migrate.reset(engine, contents.revision)
        key_dir = self.settings.effective_key_dir
        staging = key_dir / STAGING
        if staging.exists():  # a restore killed before its commit: the database is empty
            shutil.rmtree(staging)
        try:
            with engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    self._check_empty(conn)
                    with path.open("rb") as handle:
                        _insert_rows(conn, backupfile.read(handle, key, name=name))
                    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                    staging.mkdir(mode=0o700)
                    for file_name, data in sorted(contents.files.items()):
                        write_private_file(staging / file_name, data)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, SQLAlchemyError):
                raise StorageError(f"the restore failed in the database ({type(exc).__name__})"
                                   "; nothing of it was kept") from exc
            raise
        # committed: the key files take their names (one rename each, in one file system)
        for file_name in sorted(contents.files):
            (staging / file_name).rename(key_dir / file_name)
        staging.rmdir()
        sync_directory(key_dir)
        migrate.upgrade(engine)
        with self.database.transaction() as session:  # the restored chain goes on from here
            audit.record(session, CLI_ACTOR, Event(
                action="backup.restore", target=path.name,
                details={"taken_at": contents.taken_at.isoformat(),
                         "revision": contents.revision}), now=self.clock.now())
        if not replay_files:
            self.publish()
        differing = {name: (value, getattr(self.settings, name))
                     for name, value in contents.settings.items()
                     if name in KEPT_SETTINGS and value != getattr(self.settings, name)}
        return Restored(contents=contents, differing=differing)

    def publish(self) -> None:
        """Every active CA publishes a new CRL (after a restore)."""
        with self.database.transaction() as session:
            crls.mark_all_dirty(session)

    def _check_empty(self, conn: Connection | None = None) -> None:
        refused = Conflict("the target deployment is not empty: restore only into a new "
                           "database and an empty key directory")
        key_dir = self.settings.effective_key_dir
        present = sorted(p.name for p in key_dir.iterdir()) if key_dir.is_dir() else []
        if STAGING in present and present != [STAGING] and self._has_rows(conn):
            raise self._interrupted(key_dir)  # killed while the key files took their names
        if present and present != [STAGING]:
            raise Conflict(f"the key directory {key_dir} is not empty: restore only into a "
                           "new database and an empty key directory")
        if conn is None:
            if self.settings.database_url is None and not (
                    self.settings.data_dir / "tegata.db").exists():
                return  # not even a file yet: asking must not make one
            check_reachable(self.database.engine)
            with self.database.engine.connect() as reading, reading.begin():
                self._check_empty(reading)
            return
        tables = set(inspect(conn).get_table_names())
        if tables and _VERSION_TABLE not in tables:
            raise refused  # tables, but not Tegata's
        for table in DEPLOYMENT_TABLES:
            if table in tables and conn.scalar(select(func.count()).select_from(
                    sql_table(table))):
                if (key_dir / STAGING).exists():  # killed after its commit, before renames
                    raise self._interrupted(key_dir)
                raise refused

    @staticmethod
    def _interrupted(key_dir: Path) -> Conflict:
        return Conflict(f"a restore was interrupted after its database commit: move the files "
                        f"of {key_dir / STAGING} into {key_dir}, remove that directory, and "
                        "start the service")

    def _has_rows(self, conn: Connection | None) -> bool:
        """Whether the database holds a deployment's rows (a restore committed)."""
        if conn is None:
            if self.settings.database_url is None and not (
                    self.settings.data_dir / "tegata.db").exists():
                return False
            with self.database.engine.connect() as reading, reading.begin():
                return self._has_rows(reading)
        tables = set(inspect(conn).get_table_names())
        return any(conn.scalar(select(func.count()).select_from(sql_table(table)))
                   for table in DEPLOYMENT_TABLES if table in tables)

    def _check_tokens(self, contents: Contents) -> None:
        """Every active CA of the backup whose key is in a PKCS#11 token: the token settings
        are there, the token is present, the PIN opens it, it holds the key, and the key is
        the one the CA certificate names (as start-up checks): before anything is written,
        not after (a restore cannot be retried into a target no longer empty)."""
        in_tokens: dict[str, set[str]] = {}
        for key_id, token, kind, der in contents.token_cas:
            check_token_key(self.keys, in_tokens, key_id=key_id, token=token, kind=kind,
                            der=der, whose="the backup's")

    def _check_passphrase(self, contents: Contents, *, name: str) -> None:
        """The passphrase of this deployment must open the backup's keys: checked on a copy
        in a private temporary directory before anything is changed (an error names the
        backup's file, not the copy)."""
        root = next((f for f in contents.files if f.startswith("root-")), None)
        with tempfile.TemporaryDirectory(prefix="tegata-restore-") as scratch:
            directory = Path(scratch)
            for file_name, data in contents.files.items():
                write_private_file(directory / file_name, data)
            source = self.settings.passphrase_source()
            passphrase = self.settings.passphrase()
            try:
                if "data-protection.key" in contents.files:
                    load_sealer(directory, passphrase, passphrase_source=source)
                if root is not None:
                    FileKeyStore(directory, passphrase, passphrase_source=source).load(
                        root.removesuffix(".key.pem"))
            except ConfigError as exc:
                exc.message = exc.message.replace(f"{directory}/", f"{name}'s ")
                raise


def read_contents(records: Iterator[dict[str, Any]], *, name: str) -> Contents:
    """Check a backup's records in order (header, tables, files, end) and sum them up."""
    def damaged(what: str) -> InvalidInput:
        return InvalidInput(f"{name} is damaged: {what}", field="file")

    first = next(records, None)
    if first is None or first["kind"] != "backup":
        raise damaged("it does not start with its header")
    contents = Contents(taken_at=first["taken_at"], revision=first["revision"],
                        dialect=first["dialect"], settings=first["settings"])
    tenants: dict[int, str] = {}
    authorities: list[dict[str, Any]] = []
    current: str | None = None
    columns: list[str] = []
    end = None
    for record in records:
        if end is not None:
            raise damaged("records follow its end")
        kind = record["kind"]
        if kind == "table":
            current, columns = record["name"], record["columns"]
            contents.rows[current] = 0
        elif kind == "rows" and current is not None and record["table"] == current:
            contents.rows[current] += len(record["rows"])
            if current in ("tenants", "authorities"):
                named = [dict(zip(columns, row, strict=True)) for row in record["rows"]]
                if current == "tenants":
                    tenants.update((r["id"], r["name"]) for r in named)
                else:
                    authorities.extend(named)
        elif kind == "file":
            contents.files[record["name"]] = record["data"]
        elif kind == "end":
            end = record
        else:
            raise damaged(f"a record of kind {str(kind)[:20]!r} is out of place")
    if end is None:
        raise damaged("its end record is missing")
    if end["rows"] != contents.rows or end["files"] != sorted(contents.files):
        raise damaged("its counts do not match its content")
    contents.cas = [CaSummary(kind=a["kind"], subject=a["subject"],
                              tenant=tenants.get(a["tenant_id"]) if a["tenant_id"] else None,
                              retired=a["retired_at"] is not None)
                    for a in authorities]
    contents.ca_ders = [a["der"] for a in authorities if a["kind"] in ("root", "issuing")]
    contents.token_cas = [(a["key_id"], a["key_token"], a["kind"], a["der"])
                          for a in authorities if a.get("key_store") == PKCS11_STORE
                          and a["retired_at"] is None and a.get("key_token")]
    return contents


def _ca_summaries(conn: Connection) -> list[CaSummary]:
    """The CAs of the snapshot, as ``read_contents`` sums them up from a backup's rows."""
    tenants = sql_table("tenants", sql_column("id"), sql_column("name"))
    names = dict(conn.execute(select(tenants.c.id, tenants.c.name)).all())
    authorities = sql_table("authorities", sql_column("id"), sql_column("kind"),
                            sql_column("subject"), sql_column("tenant_id"),
                            sql_column("retired_at"))
    return [CaSummary(kind=a.kind, subject=a.subject,
                      tenant=names.get(a.tenant_id) if a.tenant_id else None,
                      retired=a.retired_at is not None)
            for a in conn.execute(select(authorities).order_by(authorities.c.id))]


def _tables(conn: Connection) -> list[Table]:
    """Every table but alembic's, parents before children (the order rows go back in)."""
    reflected = MetaData()
    reflected.reflect(bind=conn)
    return [t for t in reflected.sorted_tables if t.name != _VERSION_TABLE]


def _write_table(conn: Connection, table: Table, writer: backupfile.Writer) -> int:
    columns = [c.name for c in table.columns]
    writer.write({"kind": "table", "name": table.name, "columns": columns})
    ordered = list(table.primary_key.columns) or list(table.columns)
    result = conn.execute(select(table).order_by(*ordered)
                          .execution_options(yield_per=BATCH))
    count = 0
    for batch in result.partitions():
        writer.write({"kind": "rows", "table": table.name,
                      "rows": [list(row) for row in batch]})
        count += len(batch)
    return count


def _key_files(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())
            if path.is_file() and not path.name.startswith(".")}


def _insert_rows(conn: Connection, records: Iterator[dict[str, Any]]) -> None:
    """Every row of the backup into the target's tables (at the backup's revision), whose
    seeded rows go first; PostgreSQL's sequences then start past the ids restored."""
    reflected = MetaData()
    reflected.reflect(bind=conn)
    for table in reversed(reflected.sorted_tables):
        if table.name != _VERSION_TABLE:
            conn.execute(table.delete())
    restored: list[Table] = []
    columns: list[str] = []
    links: list[dict[str, Any]] = []
    for record in records:
        if record["kind"] == "table":
            _link(conn, restored, links)
            found = reflected.tables.get(record["name"])
            if found is None:
                raise InvalidInput(f"the backup's table {record['name']} is not in the "
                                   "schema at its revision", field="file")
            columns = record["columns"]
            restored.append(found)
        elif record["kind"] == "rows" and restored and record["rows"]:
            rows = [dict(zip(columns, row, strict=True)) for row in record["rows"]]
            links += _unlinked(restored[-1], rows)
            conn.execute(insert(restored[-1]), rows)
    _link(conn, restored, links)
    if conn.dialect.name == "postgresql":
        for table in restored:
            _advance_sequence(conn, table)


def _self_references(table: Table) -> tuple[str | None, list[str]]:
    """The table's one-column primary key and its nullable columns that name rows of the
    table itself (a CA's issuer), or (None, [])."""
    keys = list(table.primary_key.columns)
    names = sorted({fk.parent.name for fk in table.foreign_keys
                    if fk.column.table is table and fk.parent.nullable})
    return (keys[0].name, names) if len(keys) == 1 and names else (None, [])


def _unlinked(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Take out of ``rows`` their references to rows of the same table, to be set once every
    row is in (``_link``): a row may name one with a larger id (foreign keys are checked at
    each insert, on SQLite as on PostgreSQL)."""
    key, names = _self_references(table)
    links = []
    for row in rows:
        if key is not None and any(row.get(name) is not None for name in names):
            links.append({"_key": row[key], **{f"_{name}": row[name] for name in names}})
            row.update(dict.fromkeys(names))
    return links


def _link(conn: Connection, restored: list[Table], links: list[dict[str, Any]]) -> None:
    """Set the references ``_unlinked`` took out of the last table's rows."""
    if not links:
        return
    table = restored[-1]
    key, names = _self_references(table)
    assert key is not None
    conn.execute(update(table).where(table.c[key] == bindparam("_key"))
                 .values({name: bindparam(f"_{name}") for name in names}), links)
    links.clear()


def _advance_sequence(conn: Connection, table: Table) -> None:
    """The table's id sequence (if it has one) continues after the largest id restored."""
    keys = list(table.primary_key.columns)
    if len(keys) != 1 or not isinstance(keys[0].type, Integer):
        return
    key = keys[0]
    sequence = func.pg_get_serial_sequence(f'"{table.name}"', key.name)
    conn.execute(select(func.setval(sequence, func.coalesce(func.max(key), 1),
                                    func.max(key).is_not(None))).select_from(table))
