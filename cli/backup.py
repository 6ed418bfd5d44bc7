"""`tegata backup`, `backup verify`, `backup keygen`, `backup replay` and `tegata restore`.

The backup key comes only from a file (``--key-file``, mode 0600): never from argv or the
environment. A backup file is written whole or not at all (``output_file``).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from ca import backupfile
from ca.errors import CAError, ConfigError, InvalidInput
from ca.service.backups import Contents, Restored
from ca.service.replay import ReplayedCrl, load_crls
from ca.signer import check_private_file, sync_directory
from cli.context import STATE, emit
from cli.options import JsonOpt
from cli.output import output_file, read_file, shown

backup_app = typer.Typer(help="Encrypted backups of the database and the key directory.")

KEEP_DEFAULT = 20
CRL_LIMIT = 512 * 1024 * 1024  # a CRL of millions of entries is a few hundred MB at most
# generations in a --dir: the name sorts as the time it was taken (UTC, microseconds)
GENERATION = re.compile(r"tegata-backup-\d{8}T\d{12}Z\.tgbk")

KeyFileOpt = Annotated[Path, typer.Option(
    "--key-file", help="The backup key: a file (mode 0600) made by `tegata backup keygen`.")]


def register(app: typer.Typer) -> None:
    app.add_typer(backup_app, name="backup")
    app.command("restore")(restore)


def read_key(path: Path) -> bytes:
    """The backup key of a private file; a file others may read, or a symbolic link (whose
    target's mode says nothing of who may change the link), is refused (78)."""
    try:
        if path.is_symlink():
            raise ConfigError(f"backup key file {shown(path)} is a symbolic link: give the "
                              "key file itself", field="key_file")
        check_private_file(path, what="backup key file")
    except (OSError, ValueError) as exc:  # a name too long, a NUL
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not usable"
        raise InvalidInput(f"cannot read backup key file {shown(path)}: {reason}",
                           field="key_file") from None
    return backupfile.decode_key(read_file(path, limit=4096, field="key_file"),
                                 source=shown(path))


@backup_app.callback(invoke_without_command=True)
def backup(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The file to write.")] = None,
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="A directory of generations (made, mode 0700, if missing): a new "
                      "file named by the time, the oldest beyond --keep removed.")] = None,
    keep: Annotated[int, typer.Option("--keep", min=1, max=10_000,
                                      help="Generations kept in --dir.")] = KEEP_DEFAULT,
    key_file: Annotated[Path | None, typer.Option(
        "--key-file", help="The backup key (mode 0600; `tegata backup keygen`).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Back up every database row, the CA keys and the data-protection key (both still
    under the passphrase) and the settings a restore needs, while the service runs;
    encrypted and authenticated under the backup key."""
    if ctx.invoked_subcommand is not None:
        return
    if (out is None) == (directory is None):
        raise InvalidInput("give --out FILE or --dir DIR (one of them)", field="out")
    if key_file is None:
        raise InvalidInput("--key-file is required", field="key_file")
    key = read_key(key_file)
    service = STATE.service()
    removed: list[str] = []
    if directory is not None:
        if not directory.exists() and not directory.is_symlink():
            # the first night's backup makes its directory, private as the backups are
            directory.mkdir(mode=0o700, parents=True)
        if not directory.is_dir():
            raise InvalidInput(f"{shown(directory)} is not a directory", field="dir")
        stamp = service.clock.now().astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        out = directory / f"tegata-backup-{stamp}.tgbk"
    assert out is not None
    with output_file(out, force=force) as handle:
        contents = service.backups.take(handle, key)
    if directory is not None:
        later = newer_than(directory, out.name)
        if later:
            typer.echo(f"warning: {len(later)} backup(s) in {shown(directory)} are named "
                       f"after this one ({shown(later[-1])}): did the clock go back? "
                       "this one is kept, the oldest others pruned", err=True)
        removed = prune(directory, keep, written=out.name)
    data = {"file": str(out), **summary(contents), "removed": removed}
    emit(data, as_json=as_json, text=f"backup {shown(out)}: {describe(contents)}" + (
        f"; removed {len(removed)} older" if removed else ""))


def generations(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if GENERATION.fullmatch(p.name))


def newer_than(directory: Path, written: str) -> list[str]:
    """The generations whose names sort after the one just written (a clock stepped back,
    generations copied from elsewhere)."""
    return [name for name in generations(directory) if name > written]


def prune(directory: Path, keep: int, *, written: str) -> list[str]:
    """Remove the oldest generations beyond ``keep``, never ``written`` (the one just made,
    whatever its name sorts as: it counts as one of those kept); files of other names stay.
    Called only once the new file and its name are on disk (``output_file`` fsyncs both)."""
    others = [name for name in generations(directory) if name != written]
    doomed = others[:max(len(others) - (keep - 1), 0)]
    for name in doomed:
        (directory / name).unlink(missing_ok=True)
    if doomed:
        sync_directory(directory)
    return doomed


@backup_app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", "-o", help="The key file to write (0600).")],
) -> None:
    """Make a backup key: 32 random bytes in base64, in a new file of mode 0600. Keep it
    apart from the backups and from the CA key passphrase."""
    with output_file(out, field="out") as handle:
        handle.write(backupfile.encode_key(backupfile.new_key()))
    typer.echo(f"backup key written to {shown(out)}")


@backup_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="The backup file.")],
    key_file: KeyFileOpt,
    as_json: JsonOpt = False,
) -> None:
    """Authenticate a whole backup, check its structure and say what it holds."""
    key = read_key(key_file)
    contents = _inspect(file, key)
    data = summary(contents)
    emit(data, as_json=as_json, text=f"{shown(file)}: intact\n" + details(contents))


@backup_app.command("replay")
def replay(
    crl_files: Annotated[list[Path], typer.Argument(
        help="CRL files (PEM or DER): each gateway's last CRL of each CA.")],
    as_json: JsonOpt = False,
) -> None:
    """After a restore: apply again the revocations and suspensions these CRLs list and the
    database does not, and publish new CRLs numbered above them."""
    files = _crl_files(crl_files)
    replayed = STATE.service().replay.replay(files)
    emit([replayed_data(r) for r in replayed], as_json=as_json,
         text="\n".join(replayed_text(r) for r in replayed))


def restore(
    file: Annotated[Path, typer.Argument(help="The backup file.")],
    key_file: KeyFileOpt,
    replay_from: Annotated[list[Path] | None, typer.Option(
        "--replay-from", help="A gateway's last CRL (PEM or DER), replayed after the "
                              "restore; once per CA.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into an empty deployment (a database with no rows, an empty key
    directory); anything else is refused and left as it is."""
    key = read_key(key_file)
    files = _crl_files(replay_from or [])
    service = STATE.service(check_schema=False)
    if not file.is_file():
        raise InvalidInput(f"cannot read {shown(file)}: not a file", field="file")
    restored = service.backups.restore(file, key, replay_files=files)
    try:
        replayed = service.replay.replay(files, everyone=True) if files else []
    except CAError as exc:
        service.backups.publish()  # the replay changed nothing: publish as without one
        exc.message = (f"restored {shown(file)}; replay failed: {exc}; the CRLs were published "
                       "without it: run `tegata backup replay CRLFILE ...` once fixed")
        raise
    data = {**summary(restored.contents), "differing_settings": {
        k: {"backup": v[0], "here": v[1]} for k, v in restored.differing.items()},
        "replayed": [replayed_data(r) for r in replayed]}
    emit(data, as_json=as_json, text=restored_text(file, restored, replayed))


def _inspect(file: Path, key: bytes) -> Contents:
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {shown(file)}: {exc.strerror}", field="file") from None
    with handle:
        return STATE.service(check_schema=False).backups.inspect(handle, key,
                                                                 name=shown(file))


def _crl_files(paths: list[Path]) -> dict[str, bytes]:
    files = {}
    for path in paths:
        data = read_file(path, limit=CRL_LIMIT, field="replay_from", what="CRL ")
        load_crls(data, name=shown(path))  # refused before anything is changed
        files[shown(path)] = data
    return files


def summary(contents: Contents) -> dict[str, Any]:
    return {"taken_at": contents.taken_at.isoformat(), "revision": contents.revision,
            "dialect": contents.dialect, "rows": contents.rows,
            "files": sorted(contents.files), "settings": contents.settings,
            "cas": [{"kind": ca.kind, "subject": ca.subject, "tenant": ca.tenant,
                     "retired": ca.retired} for ca in contents.cas]}


def describe(contents: Contents) -> str:
    return (f"taken {contents.taken_at.isoformat()}, schema {contents.revision}, "
            f"{sum(contents.rows.values())} rows in {len(contents.rows)} tables, "
            f"{len(contents.files)} key files")


def details(contents: Contents) -> str:
    lines = [describe(contents)]
    lines += [f"  {table}: {count}" for table, count in contents.rows.items()]
    lines += [f"  CA {ca.kind} {shown(ca.subject, 200)}"
              + (f" (tenant {shown(ca.tenant)})" if ca.tenant else "")
              + (" retired" if ca.retired else "") for ca in contents.cas]
    return "\n".join(lines)


def replayed_data(replayed: ReplayedCrl) -> dict[str, Any]:
    return {"file": replayed.name, "ca": replayed.ca, "number": replayed.number,
            "entries": [{"serial": e.serial, "reason": e.reason, "date": e.date.isoformat(),
                         "applied": e.applied, "known": e.known, "login": e.login,
                         "skipped": "changed after this CRL" if e.changed_after else None}
                        for e in replayed.entries]}


def replayed_text(replayed: ReplayedCrl) -> str:
    lines = [f"replayed {replayed.name} (CRL {replayed.number} of {shown(replayed.ca, 200)}): "
             f"{sum(e.applied for e in replayed.entries)} applied again"
             + (f", {skipped} skipped (changed after this CRL)" if (skipped := sum(
                 e.changed_after for e in replayed.entries)) else "")]
    for e in replayed.entries:
        what = f"{e.reason} at {e.date.isoformat()}"
        if e.changed_after:
            lines.append(f"  {e.serial} ({shown(e.login)}): {what}; skipped: changed after "
                         "this CRL")
        elif e.known:
            lines.append(f"  {e.serial} ({shown(e.login)}): {what}, applied again")
        elif e.applied:
            lines.append(f"  {e.serial}: {what}; not in the database (issued after the "
                         "backup): kept on the CA's CRLs and revoked in OCSP from now on")
        else:
            lines.append(f"  {e.serial}: {what}; not in the database (issued after the "
                         "backup): a hold cannot be kept without the certificate, revoke "
                         "it at the gateway or have it reissued")
    return "\n".join(lines)


def restored_text(file: Path, restored: Restored, replayed: list[ReplayedCrl]) -> str:
    contents = restored.contents
    lines = [f"restored {shown(file)}: {describe(contents)}",
             f"revocations and suspensions made after {contents.taken_at.isoformat()} are "
             "not in the database" + ("" if replayed else
                                      ": replay each gateway's last CRL with `tegata backup "
                                      "replay CRLFILE ...`")]
    lines += [f"setting {name}: the backup's {shown(theirs)!r}, this deployment's "
              f"{shown(ours)!r}" for name, (theirs, ours) in restored.differing.items()]
    lines += [replayed_text(r) for r in replayed]
    return "\n".join(lines)
