"""Hostile strings at every input of the HTTP API: NUL, a right-to-left override,
``../``, CR/LF, a 100,000-character value, invalid UTF-8, a lone surrogate, ``<script>``, SQL,
a literal ``%00`` and look-alike letters.

The inputs are not listed by hand: they come from the app itself. Every operation of its
OpenAPI document is one test; its inputs are every path, query and header parameter the
document declares, the ``Authorization`` header of a guarded route, the headers its handler
reads (found in the handler's source), every string leaf of its JSON body (arrays and nested
objects included), the cells of a CSV upload (the columns are those of the users' CSV export),
and the raw body of any route that takes one. Each input gets each hostile value in turn, the
other inputs keeping valid values, on a service with data in it, as each role the route
admits among operator and tenant admin (or its only role).

For every answer: no 5xx and no exception; an error status is documented for the route and
carries ``application/problem+json`` with a ``urn:tegata:problem:`` type (unless the route
documents another body for it); no response header holds CR, LF or NUL, an injected header or
the hostile value itself, and a Content-Disposition file name stays a plain name; HTML and
text bodies never hold ``<script`` unescaped; zip entry names stay plain names. A refused
request changes nothing: every row of every table (audit log included) and every file of the
data directory are the same before and after (a 2xx whose body lists ``errors``, as a CSV
import that wrote nothing, counts as a refusal). A 2xx is allowed where a value is legitimately
accepted; then the stored value must come back exactly (in the JSON answer, or in the CSV
export for an import), no background job it started may fail on it, a look-alike of alice's
login must find no more of her than a name nobody has, and every GET that can show what was
stored (zips, CSV, HTML) must still pass the checks above.

Where a query parameter is an enum (``format=csv`` streams where ``json`` does not), each
path and query case runs once more with those enums at their last value.

Requests go to the ASGI app directly, not through httpx, so that a 100,000-character URL, raw
bytes in a header and a percent-encoded invalid UTF-8 path reach the app as sent.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime as dt
import inspect
import io
import ipaddress
import itertools
import json
import re
import tempfile
import time
import typing
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes, unquote

import anyio
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import Engine, MetaData, create_engine, select

from api.app import api_routes, build_app
from api.auth import RoleGuard, declared_access
from ca.service import IssueRequest, Service
from ca.service.limits import BUCKETS, limits_file
from ca.settings import load_settings
from tests.support.cli import Env
from tests.support.environment import BASE_URL, PASSPHRASE

PROBLEM = "application/problem+json"
TYPE_PREFIX = "urn:tegata:problem:"
PLACEHOLDER = "HOSTILE-PLACEHOLDER-7F3A"
LIMITS_FILE = limits_file(Path("tegata.db")).name


# --- the hostile values ----------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    id: str
    text: str | None  # None: no Python string can hold it (invalid UTF-8)
    wire: bytes  # the bytes sent in a path, query, header or CSV cell
    imitates: str | None = None  # the existing name a look-alike poses as

    @property
    def storable(self) -> bool:
        """A value that could be stored and shown back exactly."""
        return self.text is not None and not any(0xD800 <= ord(c) <= 0xDFFF
                                                 for c in self.text)


# the one script an HTML page may hold: its own, from the console's static files (the link
# pages' Content-Security-Policy allows no other)
OWN_SCRIPT = b'<script src="/console/static/console.js" defer></script>'


def _text(name: str, text: str, imitates: str | None = None) -> Hostile:
    return Hostile(name, text, text.encode("utf-8", "surrogatepass"), imitates)


HOSTILE = [
    _text("nul", "\x00"),
    _text("rtl-override", "\u202etxt.exe"),
    _text("dot-dot", "../../etc/passwd"),
    _text("crlf", "a\r\nX-Injected: 1"),
    _text("100k", "a" * 100_000),
    Hostile("invalid-utf8", None, b"\xff\xfe"),
    _text("lone-surrogate", "\ud800"),
    _text("script", "<script>alert(1)</script>"),
    _text("sql", "' OR 1=1 --"),
    _text("pct-00", "%00"),
    _text("cyrillic-lookalike", "\u0430lice", imitates="alice"),
    _text("fullwidth-lookalike", "\uff41\uff4c\uff49\uff43\uff45", imitates="alice"),
]

# What can behave differently on PostgreSQL: text without NUL, encodings, enforced column
# lengths, case folding. On PostgreSQL only these run again; SQLite gets every value.
DATABASE_SENSITIVE = {"nul", "100k", "invalid-utf8", "lone-surrogate", "sql",
                      "cyrillic-lookalike", "fullwidth-lookalike"}


def hostile_values(world: World) -> list[Hostile]:
    if world.env.database_url is None or world.env.database_url.startswith("sqlite"):
        return HOSTILE
    return [h for h in HOSTILE if h.id in DATABASE_SENSITIVE]


# --- the operations, from the app's own OpenAPI document ---------------------------------------


def _app() -> FastAPI:
    """The app, at collection time, for its document and routes (no database is touched)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp) / "data",
                                 database_url=f"sqlite:///{tmp}/openapi.db",
                                 key_passphrase=PASSPHRASE, public_base_url=BASE_URL)
        app = build_app(settings)
        app.openapi()
        app.state.service.engine.dispose()
        return app


APP = _app()
DOCUMENT = APP.openapi()
ALL_OPERATIONS = sorted((method.upper(), path) for path, item in DOCUMENT["paths"].items()
                        for method in item if method in ("get", "post", "put", "patch",
                                                         "delete"))


def _template(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def route_of(app: FastAPI, method: str, path: str) -> APIRoute:
    for route in api_routes(app):
        if _template(route.path) == path and method in route.methods:
            return route
    raise AssertionError(f"{method} {path} is in the OpenAPI document but not a route")


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = DOCUMENT["components"]["schemas"][name]
    return schema


def non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of the non-null value (``X | None`` is anyOf X, null)."""
    schema = resolve(schema)
    if "type" in schema or "properties" in schema:
        return schema  # its oneOf, if any, constrains an object (see ``bodies``)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [resolve(b) for b in schema[key] if resolve(b).get("type") != "null"]
            if branches:
                return branches[0]
    return schema


def body_model(route: APIRoute) -> Any | None:
    """The annotation of the handler's body parameter (a pydantic model, maybe optional)."""
    hints = typing.get_type_hints(route.endpoint)
    for name in inspect.signature(route.endpoint).parameters:
        hint = hints.get(name)
        members = typing.get_args(hint) or (hint,)
        if any(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
            return hint
    return None


_HEADER_READ = re.compile(
    r"request\.headers(?:\.get\(|\[)\s*([A-Za-z_][A-Za-z0-9_]*|\"[^\"]+\"|'[^']+')")


def headers_read_by(route: APIRoute) -> list[str]:
    """Request headers the handler reads itself (not declared in the document)."""
    source = inspect.getsource(route.endpoint)
    found = []
    for expr in _HEADER_READ.findall(source):
        if expr[0] in "\"'":
            found.append(expr[1:-1].lower())
        else:
            value = route.endpoint.__globals__.get(expr)
            if isinstance(value, str):
                found.append(value.lower())
    return sorted(set(found))


def has_inputs(method: str, path: str) -> bool:
    op = DOCUMENT["paths"][path][method.lower()]
    route = route_of(APP, method, path)
    return bool(op.get("parameters") or op.get("requestBody") or headers_read_by(route)
                or isinstance(declared_access(route), RoleGuard))


# /healthz and /readyz take nothing a caller can make hostile
OPERATIONS = [(m, p) for m, p in ALL_OPERATIONS if has_inputs(m, p)]


# --- valid values, for the inputs a case does not make hostile --------------------------------


@dataclass
class Data:
    serial: str
    job_id: str
    link_token: str
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def fresh(self, stem: str) -> str:
        return f"{stem}{next(self.counter)}"


def valid_path_value(name: str, path: str, data: Data) -> str:
    values = {"tenant": "default", "login": "alice", "serial": data.serial,
              "job_id": data.job_id, "token": data.link_token, "encoded": "AA",
              "name": "root.crt" if path.startswith("/ca/") else "default.crl"}
    return values.get(name, "x")


def valid_leaf(name: str, owner: str, schema: dict[str, Any], data: Data) -> Any:
    """A valid value for one scalar body field, or None if none is known: names that must be
    fresh or must exist first, else what the document says (example, enum, default)."""
    if (owner, name) == ("TenantIn", "name"):
        return data.fresh("newco")
    if (owner, name) == ("UserIn", "login"):
        return data.fresh("carol")
    by_name = {"login": "alice", "logins": "alice", "email": "carol@example.com",
               "group": "staff", "groups": "staff", "timezone": "Asia/Tokyo",
               "display_name": "Carol Example", "policy": "ip_or_cert",
               "networks": "192.0.2.0/24"}
    schema = non_null(schema)
    if name in by_name and schema.get("type") == "string":
        return by_name[name]
    if schema.get("examples"):
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("default") is not None:
        return schema["default"]
    if schema.get("format") == "date":
        return (dt.date(2026, 3, 2) + dt.timedelta(days=90)).isoformat()
    return {"boolean": False, "integer": int(schema.get("minimum", 0))}.get(schema.get("type", ""))


def bodies(schema: dict[str, Any], data: Data, target: tuple[Any, ...] = (),
           name: str = "", owner: str = "") -> list[Any]:
    """Valid values for ``schema``, fewest fields first, each holding a valid value at
    ``target``; for an object with ``oneOf`` branches, one set per branch that lets the
    target be given (a branch's ``null`` property is left out, its ``const`` one set)."""
    schema = non_null(schema)
    kind = schema.get("type")
    if kind == "array":
        items = bodies(schema.get("items", {}), data, target[1:], name, owner)
        return [[item] for item in items[:1]]
    if kind != "object":
        value = valid_leaf(name, owner, schema, data)
        return ["x" if value is None else value]
    title, properties = schema.get("title", ""), schema.get("properties", {})
    head = target[0] if target else None
    found = []
    for branch in schema.get("oneOf") or schema.get("anyOf") or [{}]:
        fixed = branch.get("properties", {})
        if head is not None and _left_out(fixed.get(head, {})):
            continue
        needed = {*schema.get("required", []), *branch.get("required", []),
                  *([head] if head is not None else [])}
        for everything in (False, True):
            body: dict[str, Any] = {}
            for key, sub in properties.items():
                rule = fixed.get(key, {})
                if _left_out(rule):
                    if rule.get("const"):
                        body[key] = rule["const"]
                    continue
                if key in needed:
                    body[key] = bodies(sub, data, target[1:] if key == head else (),
                                       key, title)[0]
                elif everything and non_null(sub).get("type") in ("object", "array") and \
                        valid_leaf(key, title, non_null(sub).get("items", {}), data):
                    body[key] = bodies(sub, data, (), key, title)[0]
                elif everything and valid_leaf(key, title, sub, data) is not None:
                    body[key] = valid_leaf(key, title, sub, data)
            if body not in found:
                found.append(body)
    return found


def _left_out(rule: dict[str, Any]) -> bool:
    """A oneOf branch's rule that the property be null or a constant."""
    return rule.get("type") == "null" or "const" in rule


def string_leaves(schema: dict[str, Any], prefix: tuple[Any, ...] = ()
                  ) -> list[tuple[Any, ...]]:
    """Paths to every string a JSON body can hold: fields, array items, nested objects."""
    schema = non_null(schema)
    kind = schema.get("type")
    if kind == "string":
        return [prefix]
    if kind == "array":
        return string_leaves(schema.get("items", {}), (*prefix, 0))
    if kind == "object":
        return [leaf for key, sub in schema.get("properties", {}).items()
                for leaf in string_leaves(sub, (*prefix, key))]
    return []


def put(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    body = copy.deepcopy(body)
    if not path:
        return value
    node = body
    for step, following in itertools.pairwise(path):
        if isinstance(step, int):
            node[:] = [node[0] if node else ({} if isinstance(following, str) else [])]
            node = node[0]
        else:
            if not isinstance(node.get(step), dict | list):
                node[step] = [] if isinstance(following, int) else {}
            node = node[step]
    last = path[-1]
    if isinstance(last, int):
        node[:] = [value]
    else:
        node[last] = value
    return body


def get(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(body, list) or not body:
                return None
            body = body[0]
        elif isinstance(body, dict):
            body = body.get(step)
        else:
            return None
    return body


# --- driving the ASGI app ---------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    error: str | None = None  # an exception that escaped the app

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key.decode("latin-1").lower() == name:
                return value.decode("latin-1")
        return ""

    @property
    def media(self) -> str:
        return self.header("content-type").split(";")[0].strip().lower()


@dataclass
class Request:
    label: str
    method: str
    path: str  # percent-encoded, ASCII
    query: str = ""  # percent-encoded, ASCII
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    hostile: Hostile | None = None
    sent: tuple[tuple[Any, ...], Any] | None = None  # (JSON path, value) of a hostile body field
    csv_column: str | None = None  # the CSV column holding the hostile value


_addresses = (str(ipaddress.ip_address("10.0.0.0") + n) for n in itertools.count(1))


def send(app: FastAPI, request: Request) -> Answer:
    """One request through the ASGI app, from its own client address (so no per-address
    limit carries over from one case to the next)."""
    headers = [(b"host", b"tegata.test"), *request.headers]
    if request.body:
        headers.append((b"content-length", str(len(request.body)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": request.method, "scheme": "http",
        "path": unquote(request.path), "raw_path": request.path.encode("ascii"),
        "query_string": request.query.encode("ascii"), "root_path": "",
        "headers": headers, "client": (next(_addresses), 40000),
        "server": ("tegata.test", 80),
    }
    answer = Answer(status=0, headers=[], body=b"")

    async def run() -> None:
        done = anyio.Event()
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send_(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")
                if not message.get("more_body", False):
                    done.set()

        try:
            await app(scope, receive, send_)
        except Exception as exc:
            answer.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            done.set()

    anyio.run(run)
    return answer


# --- judging one answer -----------------------------------------------------------------------

_SAFE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def zip_problems(data: bytes, where: str = "") -> list[str]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        return [f"{where}not a zip file: {exc}"]
    found = []
    for name in archive.namelist():
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(
                p in ("", ".", "..") or not _SAFE_FILE.fullmatch(p) for p in parts):
            found.append(f"{where}unsafe zip entry name {name[:80]!r}")
        elif name.endswith(".zip"):
            found += zip_problems(archive.read(name), f"{where}{name}: ")
    return found


def judge(op: dict[str, Any], answer: Answer, hostiles: list[Hostile]) -> list[str]:
    """Every rule an answer to a hostile request must keep, as a list of what it broke."""
    found = []
    status = answer.status
    if answer.error:
        found.append(f"an exception escaped the app ({answer.error}) after status {status}")
    if status >= 500:
        found.append(f"status {status}: {answer.body[:200]!r}")
    documented = op["responses"]
    if status >= 400 and str(status) not in documented and "default" not in documented:
        found.append(f"status {status} is not documented for the route (documented: "
                     f"{', '.join(sorted(documented))})")
    if status >= 400:
        found += _error_body_problems(op, answer)
    for name, value in answer.headers:
        shown = name.decode("latin-1")
        if name.lower() == b"x-injected":
            found.append("a header was injected: X-Injected")
        if any(c in value for c in (b"\r", b"\n", b"\x00")):
            found.append(f"header {shown} holds CR, LF or NUL: {value[:80]!r}")
        for hostile in hostiles:
            if len(hostile.wire) >= 3 and hostile.wire in value:
                found.append(f"header {shown} echoes the hostile value: {value[:80]!r}")
        if name.lower() == b"content-disposition" and not re.fullmatch(
                rb'attachment; filename="[A-Za-z0-9][A-Za-z0-9._-]*"', value):
            found.append(f"Content-Disposition is not a plain file name: {value[:80]!r}")
    if answer.media in ("text/html", "text/plain") and b"<script" in answer.body.lower(
            ).replace(OWN_SCRIPT, b""):
        found.append(f"{answer.media} body holds an unescaped <script>")
    if answer.media == "application/zip" and 200 <= status < 300:
        found += zip_problems(answer.body)
    return found


def _error_body_problems(op: dict[str, Any], answer: Answer) -> list[str]:
    entry = op["responses"].get(str(answer.status), {})
    declared = set(entry.get("content", {}))
    success = {m for code, r in op["responses"].items() if code.startswith("2")
               for m in r.get("content", {})}
    if PROBLEM not in declared and answer.media != PROBLEM:
        if declared and answer.media in declared:
            return []
        if not declared and (answer.media in success or not answer.body):
            return []  # the route documents its own error body (an HTML page, a bare 403)
        return [f"status {answer.status} answered {answer.media or 'no content type'}, not "
                f"{PROBLEM}: {answer.body[:120]!r}"]
    if answer.media != PROBLEM:
        return [f"status {answer.status} answered {answer.media or 'no content type'}, not "
                f"{PROBLEM}: {answer.body[:120]!r}"]
    try:
        problem = json.loads(answer.body)
    except ValueError:
        return [f"the problem body is not JSON: {answer.body[:120]!r}"]
    found = []
    if not str(problem.get("type", "")).startswith(TYPE_PREFIX):
        found.append(f"problem type {problem.get('type')!r} does not start with {TYPE_PREFIX}")
    if problem.get("status") != answer.status:
        found.append(f"problem status {problem.get('status')!r} is not {answer.status}")
    if len(answer.body) > 4096:
        found.append(f"the problem body is {len(answer.body)} bytes: it echoes the input "
                     f"({answer.body[:120]!r}...)")
    return found


# --- the world: a service with data in it ------------------------------------------------------


class Tables:
    """Every row of every table, read past Tegata's engine: SQLite with the sqlite3 module
    (``Env.dump``), PostgreSQL through an engine of its own, reflected once, rows in key
    order (an update can move a row in a heap)."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self._engine: Engine | None = None
        self._metadata = MetaData()

    def read(self) -> dict[str, list[dict[str, Any]]]:
        if self.env.sqlite_file is not None:
            return self.env.dump()
        if self._engine is None:
            assert self.env.database_url is not None
            self._engine = create_engine(self.env.database_url)
            self._metadata.reflect(self._engine)
        with self._engine.connect() as conn:
            return {name: [dict(r._mapping) for r in conn.execute(
                        select(table).order_by(*table.primary_key.columns))]
                    for name, table in self._metadata.tables.items()}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


@dataclass
class World:
    app: FastAPI
    service: Service
    env: Env
    tables: Tables
    tokens: dict[str, str]
    data: Data

    def snapshot(self) -> dict[str, Any]:
        # the rate limits count every request, refused ones too: bookkeeping, not state
        files = sorted((str(p.relative_to(self.env.data_dir)), p.stat().st_size)
                       for p in self.env.data_dir.rglob("*")
                       if p.is_file() and not p.name.startswith(("tegata.db", LIMITS_FILE)))
        tables = self.tables.read()
        tables.pop(BUCKETS.name, None)
        return {"tables": tables, "files": files}

    def wait_for_jobs(self) -> None:
        deadline = time.monotonic() + 30
        while any(j["status"] == "running" for j in self.tables.read().get("jobs", [])):
            assert time.monotonic() < deadline, "a background job did not finish in 30 s"
            time.sleep(0.02)


@pytest.fixture
def world(client: TestClient, service: Service, tokens: dict[str, str]) -> Iterator[World]:
    """default (alice allowed, with a certificate, a job and a download link; bob in group
    staff) and acme; every token used once already, so that its last use does not change."""
    service.users.add("default", "bob", email="bob@example.com", display_name="Bob",
                     groups=("staff",))
    (cert,) = service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))
    job = service.jobs.start("default", "issue", lambda _progress: {"issued": []})
    link = service.links.create("default", "alice")
    for token in tokens.values():
        service.tokens.authenticate(token)
    settings = service.settings
    env = Env(data_dir=settings.data_dir, database_url=settings.database_url)
    made = World(app=client.app, service=service, env=env,  # type: ignore[arg-type]
                 tables=Tables(env), tokens=tokens,
                 data=Data(serial=cert.serial, job_id=job.id, link_token=link.token))
    made.wait_for_jobs()
    yield made
    made.tables.close()


# --- the cases of one operation ---------------------------------------------------------------


def callers(route: APIRoute) -> list[str | None]:
    guard = declared_access(route)
    if not isinstance(guard, RoleGuard):
        return [None]
    chosen = [r for r in ("operator", "admin") if r in guard.roles]
    return list(chosen or guard.roles[:1])


def auth(world: World, caller: str | None) -> list[tuple[bytes, bytes]]:
    if caller is None:
        return []
    return [(b"authorization", f"Bearer {world.tokens[caller]}".encode())]


def encode(text: str) -> str:
    return quote_from_bytes(text.encode("utf-8"), safe="")


def cases(world: World, method: str, path: str, op: dict[str, Any]) -> Iterator[Request]:
    route = route_of(world.app, method, path)
    params = op.get("parameters", [])
    path_values = {p["name"]: encode(valid_path_value(p["name"], path, world.data))
                   for p in params if p["in"] == "path"}

    def url(**override: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: override.get(m.group(1), path_values[m.group(1)]),
                      path)

    base_body, content = _base_body(world, route, op)
    for caller in callers(route):
        who = f" as {caller}" if caller else ""
        headers = auth(world, caller) + content
        for hostile in hostile_values(world):
            wire = quote_from_bytes(hostile.wire, safe="")
            for p in params:
                label = f"{p['in']} {p['name']}={hostile.id}{who}"
                if p["in"] == "path":
                    for extra in _query_variants(params, p["name"]):
                        yield Request(label + (f" with {extra}" if extra else ""), method,
                                      url(**{p["name"]: wire}), extra, headers=headers,
                                      body=base_body(), hostile=hostile)
                elif p["in"] == "query":
                    for extra in _query_variants(params, p["name"]):
                        yield Request(label + (f" with {extra}" if extra else ""), method,
                                      url(), "&".join(filter(None, [f"{p['name']}={wire}",
                                                                    extra])),
                                      headers=headers, body=base_body(), hostile=hostile)
                elif p["in"] == "header":
                    yield Request(label, method, url(),
                                  headers=[*headers, (p["name"].lower().encode(), hostile.wire)],
                                  body=base_body(), hostile=hostile)
            declared = {p["name"].lower() for p in params if p["in"] == "header"}
            for name in headers_read_by(route):
                if name in declared:
                    continue
                yield Request(f"header {name}={hostile.id}{who}", method, url(),
                              headers=[*headers, (name.encode(), hostile.wire)],
                              body=base_body(), hostile=hostile)
            yield from _body_cases(world, route, op, method, url(), headers, hostile, who)
    if isinstance(declared_access(route), RoleGuard):
        for hostile in hostile_values(world):
            yield Request(f"header authorization=Bearer {hostile.id}", method, url(),
                          headers=[(b"authorization", b"Bearer " + hostile.wire), *content],
                          body=base_body(), hostile=hostile)


def _query_variants(params: list[dict[str, Any]], target: str) -> list[str]:
    """The other query parameters left out; and, where some are enums (a format, a state),
    once more with each of those at its last value (``format=csv`` streams, ``json`` not)."""
    enums = [f"{p['name']}={non_null(p.get('schema', {}))['enum'][-1]}" for p in params
             if p["in"] == "query" and p["name"] != target
             and "enum" in non_null(p.get("schema", {}))]
    return ["", "&".join(enums)] if enums else [""]


def _base_body(world: World, route: APIRoute, op: dict[str, Any]
               ) -> tuple[Callable[[], bytes], list[tuple[bytes, bytes]]]:
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        model = body_model(route)
        schema = content["application/json"]["schema"]

        def body() -> bytes:
            candidates = bodies(schema, world.data)
            chosen = next((c for c in candidates if _valid(model, c)), candidates[0])
            return json.dumps(chosen).encode()

        return body, [(b"content-type", b"application/json")]
    if "text/csv" in content:
        header, row = _csv_rows(world)
        return (lambda: header + row), [(b"content-type", b"text/csv")]
    if content:
        return (lambda: b""), [(b"content-type", next(iter(content)).encode())]
    return (lambda: b""), []


def _valid(model: Any, body: Any) -> bool:
    if model is None:
        return True
    try:
        TypeAdapter(model).validate_python(body)
    except ValidationError:
        return False
    return True


def _csv_rows(world: World) -> tuple[bytes, bytes]:
    """The header and alice's row of the users' CSV export: the import's own columns."""
    answer = send(world.app, Request("export", "GET", "/api/v1/tenants/default/users.csv",
                                     headers=auth(world, "operator")))
    assert answer.status == 200, answer.body
    lines = answer.body.splitlines(keepends=True)
    alice = next(line for line in lines[1:] if line.startswith(b"alice,"))
    return lines[0], alice


def _csv_cell(value: bytes) -> bytes:
    return b'"' + value.replace(b'"', b'""') + b'"'


def _body_cases(world: World, route: APIRoute, op: dict[str, Any], method: str, url: str,
                headers: list[tuple[bytes, bytes]], hostile: Hostile, who: str
                ) -> Iterator[Request]:
    content = op.get("requestBody", {}).get("content", {})
    if not content:
        return
    # the whole body hostile: not JSON, not CSV, not DER
    yield Request(f"raw body={hostile.id}{who}", method, url, headers=headers,
                  body=hostile.wire, hostile=hostile)
    if "application/json" in content:
        model = body_model(route)
        schema = content["application/json"]["schema"]
        for leaf in string_leaves(schema):
            # a body valid with a good value here, so that only the hostile value is at fault
            candidates = bodies(schema, world.data, leaf)
            body = next((c for c in candidates if _valid(model, c)), candidates[0])
            with_placeholder = put(body, leaf, PLACEHOLDER)
            text = json.dumps(with_placeholder).encode()
            if hostile.text is None:
                encoded = b'"' + hostile.wire + b'"'
            else:
                encoded = json.dumps(hostile.text).encode()
            yield Request(f"body {'.'.join(map(str, leaf))}={hostile.id}{who}", method, url,
                          headers=headers,
                          body=text.replace(json.dumps(PLACEHOLDER).encode(), encoded),
                          hostile=hostile,
                          sent=(leaf, hostile.text) if hostile.storable else None)
    if "text/csv" in content:
        columns = _csv_rows(world)[0].rstrip(b"\r\n").split(b",")
        for i, column in enumerate(columns):
            # alice's row as it is now, so that only the hostile cell can change anything
            header, row = _csv_rows(world)
            cells = row.rstrip(b"\r\n").split(b",")
            hostile_row = b",".join([*cells[:i], _csv_cell(hostile.wire), *cells[i + 1:]])
            yield Request(f"csv column {column.decode()}={hostile.id}{who}", method, url,
                          headers=headers, body=header + hostile_row + b"\r\n", hostile=hostile,
                          csv_column=column.decode())


# --- after a 2xx: what was stored comes back, and shows safely ---------------------------------


def lookalike_problems(world: World, request: Request, answer: Answer) -> list[str]:
    """A look-alike of alice's login, as a path or query value of a read, finds no more of
    her than a name nobody has: nothing folds "\u0430lice" or fullwidth letters into
    "alice"."""
    hostile = request.hostile
    if (request.method != "GET" or hostile is None or hostile.imitates is None
            or not request.label.startswith(("path ", "query "))):
        return []
    sent = quote_from_bytes(hostile.wire, safe="")
    nobody = send(world.app, dataclasses.replace(
        request, path=request.path.replace(sent, "nobody"),
        query=request.query.replace(sent, "nobody")))
    name = hostile.imitates.encode()
    if answer.body.count(name) > nobody.body.count(name):
        return [f"the look-alike found {hostile.imitates!r} where an unknown name does not: "
                f"{answer.body[:160]!r}"]
    return []


def reports_errors(answer: Answer) -> bool:
    """A 2xx whose body lists errors (a CSV import that wrote nothing) is a refusal too."""
    if answer.media != "application/json":
        return False
    try:
        body = json.loads(answer.body)
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("errors"))


def round_trip_problems(world: World, request: Request, answer: Answer) -> list[str]:
    if request.csv_column and request.hostile and request.hostile.storable:
        return csv_round_trip_problems(world, request.csv_column, request.hostile, answer)
    if request.sent is None or answer.media != "application/json":
        return []
    leaf, sent = request.sent
    try:
        stored = get(json.loads(answer.body), tuple(s for s in leaf if isinstance(s, str)))
    except ValueError:
        return []
    if stored is None:
        return []
    if isinstance(stored, list) and isinstance(leaf[-1], int):
        return [] if sent in stored else [f"stored {stored!r:.120}, sent {sent!r:.80}"]
    return [] if stored == sent else [f"stored {stored!r:.120}, sent {sent!r:.80}"]


def csv_round_trip_problems(world: World, column: str, hostile: Hostile,
                            answer: Answer) -> list[str]:
    """An imported cell that was written comes back exactly in the CSV export."""
    report = json.loads(answer.body)
    if not (report.get("created") or report.get("updated")) or report.get("dry_run"):
        return []
    export = send(world.app, Request("export", "GET", "/api/v1/tenants/default/users.csv",
                                     headers=auth(world, "operator")))
    rows = list(csv.DictReader(io.StringIO(export.body.decode("utf-8-sig"))))
    # the export marks a cell as text with one leading apostrophe (a formula guard)
    shown = [(row.get(column) or "").removeprefix("'") for row in rows]
    if hostile.text in shown:
        return []
    return [f"the import wrote column {column} but the export does not hold "
            f"{hostile.text!r:.80} exactly: {shown!r:.160}"]


def readback_problems(world: World, accepted: list[Hostile]) -> list[str]:
    """Every GET route, with valid inputs: nothing accepted earlier breaks what it shows."""
    found = []
    for method, path in ALL_OPERATIONS:
        if method != "GET":
            continue
        op = DOCUMENT["paths"][path]["get"]
        route = route_of(world.app, method, path)
        url = re.sub(r"\{(\w+)\}", lambda m, p=path: encode(
            valid_path_value(m.group(1), p, world.data)), path)
        caller = callers(route)[0]
        answer = send(world.app, Request("readback", method, url, headers=auth(world, caller)))
        found += [f"readback GET {path}: {p}" for p in judge(op, answer, accepted)]
    return found


def failed_jobs(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """An accepted request whose background job then failed was a refusal in disguise: the
    input was checked only after the answer, and a failed job is left behind."""
    known = {job["id"] for job in before["tables"].get("jobs", [])}
    return [f"accepted, but its background job failed: {job['error']!r:.160}"
            for job in after["tables"].get("jobs", [])
            if job["id"] not in known and job["status"] == "failed"]


def describe_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    changed = []
    for table in sorted(set(before["tables"]) | set(after["tables"])):
        old, new = before["tables"].get(table, []), after["tables"].get(table, [])
        if old != new:
            added = [r for r in new if r not in old]
            removed = [r for r in old if r not in new]
            changed.append(f"{table}: +{len(added)} -{len(removed)} "
                           f"{(added or removed)[:1]!r:.160}")
    if before["files"] != after["files"]:
        changed.append(f"files: {sorted(set(after['files']) ^ set(before['files']))!r:.160}")
    return "; ".join(changed)


# --- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_hostile_strings_at_every_input_get_a_clean_refusal_and_change_nothing(
        world: World, method: str, path: str) -> None:
    op = DOCUMENT["paths"][path][method.lower()]
    failures: list[str] = []
    accepted: list[Hostile] = []
    count = 0
    before = world.snapshot()
    for request in cases(world, method, path, op):
        count += 1
        hostiles = [request.hostile] if request.hostile else []
        answer = send(world.app, request)
        world.wait_for_jobs()
        found = judge(op, answer, hostiles)
        after = world.snapshot()
        if 200 <= answer.status < 300 and not reports_errors(answer):
            found += lookalike_problems(world, request, answer)
            found += round_trip_problems(world, request, answer)
            found += failed_jobs(before, after)
            accepted += hostiles
        elif after != before:
            found.append(f"a refused request ({answer.status}) changed the state: "
                         f"{describe_change(before, after)}")
        before = after
        failures += [f"{method} {path} {request.label} -> {answer.status}: {f}" for f in found]
    if accepted and method != "GET":
        failures += readback_problems(world, accepted)
    assert count >= len(hostile_values(world))
    assert not failures, f"{len(failures)} of {count} cases failed:\n" + "\n".join(failures)
