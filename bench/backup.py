"""Backup and restore at company scale: `tegata backup`, `backup verify` and `restore` of a
deployment with N users, each holding a certificate and its sealed key, through the CLI
(one process per step, as an operator runs them); SQLite, and PostgreSQL when --pg names a
server the script may create databases on.

    .venv/bin/python bench/backup.py --users 10000
    .venv/bin/python bench/backup.py --users 10000 --pg postgresql+psycopg://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import tempfile
from pathlib import Path

from benchkit import machine
from bulk import ROOT, TEGATA, csv_file, run
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def environment(data: Path, passphrase: str, url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")}
    env.update(TEGATA_DATA_DIR=str(data), TEGATA_KEY_PASSPHRASE=passphrase,
               TEGATA_CONFIG=str(data / "none.toml"))
    if url is not None:
        env["TEGATA_DATABASE_URL"] = url
    return env


def tegata(env: dict[str, str], *args: str) -> str:
    return subprocess.run([*TEGATA, *args], env=env, cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


class Databases:
    """Throwaway PostgreSQL databases on the server of ``--pg``, dropped at the end."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.made: list[str] = []
        self.admin = create_engine(url, isolation_level="AUTOCOMMIT") if url else None

    def new(self) -> str:
        assert self.admin is not None and self.url is not None
        name = "tg_bench_" + secrets.token_hex(4)
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.made.append(name)
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        if self.admin is None:
            return
        with self.admin.connect() as conn:
            for name in self.made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


def bench(users: int, work: Path, kind: str, databases: Databases) -> list[dict[str, object]]:
    passphrase = secrets.token_urlsafe(24)
    source = environment(work / f"{kind}-source", passphrase,
                         databases.new() if kind == "postgresql" else None)
    tegata(source, "init", "--key-type", "ec-p256")
    csv_file(work / "users.csv", users)
    tegata(source, "user", "import", str(work / "users.csv"))
    tegata(source, "cert", "issue", "--all")
    key = work / f"{kind}.key"
    tegata(source, "backup", "keygen", "--out", str(key))
    out = work / f"{kind}.tgbk"
    rows = [run(f"{kind} backup", ["backup", "--out", str(out), "--key-file", str(key)],
                source, users)]
    rows[-1]["file_mb"] = round(out.stat().st_size / 1e6, 1)
    rows.append(run(f"{kind} verify", ["backup", "verify", str(out), "--key-file", str(key)],
                    source, users))
    target = environment(work / f"{kind}-target", passphrase,
                         databases.new() if kind == "postgresql" else None)
    rows.append(run(f"{kind} restore", ["restore", str(out), "--key-file", str(key)],
                    target, users))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--pg", help="a PostgreSQL URL the script may create databases on")
    args = parser.parse_args()
    print(machine())
    databases = Databases(args.pg)
    try:
        with tempfile.TemporaryDirectory(prefix="tegata-bench-backup-") as work:
            rows = bench(args.users, Path(work), "sqlite", databases)
            if args.pg:
                rows += bench(args.users, Path(work), "postgresql", databases)
    finally:
        databases.close()
    print(f"{'step':<20} {'users':>7} {'seconds':>8} {'peak MB':>8} {'CPU s':>6} {'file MB':>8}")
    for row in rows:
        print(f"{row['step']:<20} {row['users']:>7} {row['seconds']:>8} {row['peak_mb']:>8} "
              f"{row['cpu']:>6} {row.get('file_mb', ''):>8}")


if __name__ == "__main__":
    main()
