"""The composition root: one database, one key store, one clock, wired into the use cases.

``build_service(settings)`` is the only place that builds them; the API (``api.app.build_app``),
the CLI (``cli.context``), the workers and the tests all go through it. Each use case gets
what it needs by name in its constructor, so its dependencies read there:

    database   Database        units of work (republishing the CRLs they touch), reads
    keys       Keys            the CA keys behind their signers, the data-protection sealer
    publisher  CrlPublisher    makes a CA's CRL (used by ``database`` at commit, ``crls``
                               and ``lifecycle``)
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from ca.clock import Clock, SystemClock
from ca.db.engine import make_engine
from ca.profiles import Urls
from ca.service.auditlog import Audit
from ca.service.backups import Backups
from ca.service.bulkjobs import BulkIssue
from ca.service.certificates import Certificates
from ca.service.crl_publication import Crls
from ca.service.downloads import Downloads
from ca.service.gateway import Gateway
from ca.service.hierarchy import Hierarchy
from ca.service.jobs import Jobs
from ca.service.lifecycle import Lifecycle
from ca.service.links import Links
from ca.service.ocsp import Ocsp
from ca.service.plumbing import CrlPublisher, Database, Keys
from ca.service.replay import Replay
from ca.service.revocation import Revocation
from ca.service.sessions import ConsoleSessions
from ca.service.startup import Startup
from ca.service.tokens import Tokens
from ca.service.users import Users
from ca.settings import Settings


@dataclass(frozen=True, kw_only=True, eq=False)
class Service:
    """Tegata's use cases over one database, one key store and one clock. A plain holder:
    every operation is a method of one of the use cases below."""

    settings: Settings
    clock: Clock
    urls: Urls
    database: Database
    keys: Keys
    publisher: CrlPublisher
    startup: Startup
    hierarchy: Hierarchy
    users: Users
    certificates: Certificates
    bulk_issue: BulkIssue
    downloads: Downloads
    jobs: Jobs
    revocation: Revocation
    crls: Crls
    lifecycle: Lifecycle
    ocsp: Ocsp
    tokens: Tokens
    sessions: ConsoleSessions
    links: Links
    gateway: Gateway
    audit: Audit
    backups: Backups
    replay: Replay

    @property
    def engine(self) -> Engine:
        return self.database.engine


def build_service(settings: Settings, *, clock: Clock | None = None,
                  engine: Engine | None = None) -> Service:
    """Wire Tegata's use cases: ``clock`` defaults to the system's, ``engine`` to one on
    ``settings``' database URL. Nothing is read or connected until a use case runs."""
    clock = clock or SystemClock()
    engine = engine or make_engine(settings.effective_database_url)
    urls = Urls(base=settings.public_base_url)
    keys = Keys(settings)
    publisher = CrlPublisher(keys=keys, urls=urls)
    database = Database(settings, engine, publisher=publisher, clock=clock)
    audit = Audit(settings=settings, database=database, clock=clock)
    certificates = Certificates(settings=settings, database=database, keys=keys, clock=clock,
                                urls=urls)
    jobs = Jobs(database=database, clock=clock)
    tokens = Tokens(database=database, clock=clock)
    return Service(
        settings=settings, clock=clock, urls=urls, database=database, keys=keys,
        publisher=publisher,
        startup=Startup(settings=settings, database=database, keys=keys),
        hierarchy=Hierarchy(settings=settings, database=database, keys=keys, clock=clock,
                            urls=urls),
        users=Users(database=database, clock=clock),
        certificates=certificates,
        bulk_issue=BulkIssue(certificates=certificates, jobs=jobs),
        downloads=Downloads(database=database, keys=keys, clock=clock),
        jobs=jobs,
        revocation=Revocation(database=database, clock=clock),
        crls=Crls(database=database, clock=clock, publisher=publisher),
        lifecycle=Lifecycle(database=database, keys=keys, clock=clock, publisher=publisher,
                            audit=audit),
        ocsp=Ocsp(database=database, keys=keys, clock=clock),
        tokens=tokens,
        sessions=ConsoleSessions(database=database, clock=clock, tokens=tokens),
        links=Links(settings=settings, database=database, clock=clock,
                    certificates=certificates),
        gateway=Gateway(database=database, clock=clock),
        audit=audit,
        backups=Backups(settings=settings, database=database, keys=keys, clock=clock),
        replay=Replay(database=database, clock=clock),
    )
