"""The admin's list a page at a time (``Users.page``): the selection, the certificate status
and a search decided in SQL, LIMIT/OFFSET and a COUNT, so that a tenant of ten thousand
users costs a page's worth of rows; and the issue dialog's first values
(``Certificates.issue_defaults``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import event, update

from ca.clock import FixedClock
from ca.db.models import Tenant, User
from ca.errors import InvalidInput, NotFound
from ca.service import IssueRequest, Selection, Service

TENANT = "default"
MANY = 10_000
GROUP = "営業部"


def login_of(n: int) -> str:
    return f"u{n:05d}"


def in_group(n: int) -> bool:
    return n % 3 == 0


def unaffiliated(n: int) -> bool:
    return n % 3 == 1 and n % 2 == 0


def issued(n: int) -> bool:  # a few of the group's users, spread over the logins
    return in_group(n) and n % 250 == 0


@pytest.fixture
def crowd(service: Service) -> Service:
    """Ten thousand users made by one CSV import, a third in one group, some in another,
    some in none; 14 of the group issued a certificate each."""
    lines = ["login,email,name,groups,secure_access"]
    for n in range(MANY):
        groups = GROUP if in_group(n) else "" if unaffiliated(n) else "開発部"
        lines.append(f"{login_of(n)},{login_of(n)}@example.jp,山田 {n},{groups},yes")
    report = service.users.import_users(TENANT, "\n".join(lines).encode())
    assert (len(report.created), report.errors) == (MANY, [])
    service.certificates.issue(IssueRequest(
        tenant=TENANT, logins=tuple(login_of(n) for n in range(MANY) if issued(n))))
    return service


@pytest.fixture
def loaded(crowd: Service) -> Iterator[list[str]]:
    """The logins of the User rows the ORM builds while the test runs."""
    seen: list[str] = []

    def count(user: User, _context: object) -> None:
        seen.append(user.login)

    event.listen(User, "load", count)
    yield seen
    event.remove(User, "load", count)


def page_of(service: Service, selection: Selection | None = None, *, search: str | None = None,
            offset: int = 0, limit: int = 50) -> tuple[list[str], int]:
    views, total = service.users.page(TENANT, selection, search=search, offset=offset,
                                      limit=limit)
    return [v.login for v in views], total


def test_a_page_of_ten_thousand_users_reads_only_its_own_rows(
        crowd: Service, loaded: list[str]) -> None:
    everyone = [login_of(n) for n in range(MANY)]
    assert page_of(crowd) == (everyone[:50], MANY)
    assert loaded == everyone[:50]  # the page, not the tenant, came out of the database
    assert page_of(crowd, offset=50) == (everyone[50:100], MANY)
    assert page_of(crowd, offset=9950) == (everyone[9950:], MANY)
    assert page_of(crowd, offset=9990) == (everyone[9990:], MANY)
    assert page_of(crowd, offset=MANY) == ([], MANY)
    assert len(loaded) == 50 + 50 + 50 + 10


# each filter and the users it must list (by their number); one crowd serves them all, as
# making ten thousand users costs a few seconds on a loaded PostgreSQL
FILTERS = {
    "group": (Selection(group=GROUP), None, in_group),
    "unaffiliated": (Selection(unaffiliated=True), None, unaffiliated),
    "valid": (Selection(everyone=True, status="valid"), None, issued),
    "group-unissued": (Selection(group=GROUP, status="unissued"), None,
                       lambda n: in_group(n) and not issued(n)),
    "unaffiliated-valid": (Selection(unaffiliated=True, status="valid"), None,
                           lambda n: False),
    "login": (Selection(everyone=True), "U012", lambda n: 1200 <= n < 1300),  # any case
    "group-and-name": (Selection(group=GROUP), "山田 99",
                       lambda n: in_group(n) and str(n).startswith("99")),
    "email": (Selection(everyone=True), "7@EXAMPLE.JP", lambda n: n % 10 == 7),
}


def test_a_page_is_filtered_and_counted_in_sql(crowd: Service, loaded: list[str]) -> None:
    read: list[str] = []
    for name, (selection, search, rule) in FILTERS.items():
        wanted = [login_of(n) for n in range(MANY) if rule(n)]
        assert page_of(crowd, selection, search=search) == (wanted[:50], len(wanted)), name
        middle = len(wanted) // 2
        assert page_of(crowd, selection, search=search, offset=middle, limit=7) == (
            wanted[middle:middle + 7], len(wanted)), name
        read += wanted[:50] + wanted[middle:middle + 7]
    assert loaded == read  # only the pages' rows came out of the database


def test_a_search_matches_a_japanese_name_and_takes_wildcards_literally(
        service: Service) -> None:
    for login, name in (("yamada", "山田太郎"), ("yamashita", "山下花子"),
                        ("pct", "100% 達成"), ("under", "a_b"), ("plain", "axb Smith")):
        service.users.add(TENANT, login, email=f"{login}@example.jp", display_name=name)
    assert page_of(service, search="山田") == (["yamada"], 1)
    assert page_of(service, search="  山  ") == (["yamada", "yamashita"], 2)  # trimmed
    assert page_of(service, search="%") == (["pct"], 1)
    assert page_of(service, search="a_b") == (["under"], 1)
    assert page_of(service, search="SMITH") == (["plain"], 1)
    assert page_of(service, search="") == (["pct", "plain", "under", "yamada", "yamashita"], 5)
    assert page_of(service, search="nobody") == ([], 0)


def test_a_page_leaves_out_retired_users_as_the_list_does(service: Service) -> None:
    for login in ("alice", "bob", "carol"):
        service.users.add(TENANT, login, email=f"{login}@example.jp")
    service.users.retire(TENANT, "bob")
    assert page_of(service) == (["alice", "carol"], 2)
    assert [v.login for v in service.users.list_users(TENANT)] == ["alice", "carol"]


@pytest.mark.parametrize(("offset", "limit", "search"), [
    (-1, 50, None), (0, 0, None), (0, 1001, None), (2**63, 50, None), (0, 50, "a\x00b"),
    (0, 50, "x" * 201)], ids=["negative", "empty", "huge", "offset", "nul", "long"])
def test_a_bad_page_is_refused(service: Service, offset: int, limit: int,
                               search: str | None) -> None:
    with pytest.raises(InvalidInput):
        service.users.page(TENANT, offset=offset, limit=limit, search=search)


def test_an_unknown_tenant_has_no_page(service: Service) -> None:
    with pytest.raises(NotFound):
        service.users.page("nobody")


def test_the_issue_defaults_are_the_tenants_a_year_ahead_in_the_zone_asked(
        service: Service, clock: FixedClock) -> None:
    service.hierarchy.create_tenant("tohoku", display_name="東北電機株式会社")
    clock.set(dt.datetime(2026, 3, 2, 16, 0, tzinfo=dt.UTC))  # 3 March in Tokyo, 2 in UTC
    shown = service.certificates.issue_defaults("tohoku")
    assert (shown.tenant_zone, shown.zone, shown.expires, shown.key_type,
            shown.p12_profile) == ("UTC", "UTC", dt.date(2027, 3, 2), "ec-p256", "compat")
    tokyo = service.certificates.issue_defaults("tohoku", zone="Asia/Tokyo")
    assert (tokyo.zone, tokyo.expires) == ("Asia/Tokyo", dt.date(2027, 3, 3))
    # the issuing CA ends 2046-03-02 09:00 UTC, 18:00 in Tokyo: its last whole day there is the 1st
    assert tokyo.latest == dt.date(2046, 3, 1)
    # what an issuance with nothing chosen makes
    service.users.add("tohoku", "yamada", email="yamada@example.jp", allow=True)
    (view,) = service.certificates.issue(IssueRequest(tenant="tohoku", logins=("yamada",)),
                                         admin_zone="Asia/Tokyo")
    assert (view.expiry_date, view.expiry_zone) == (tokyo.expires, "Asia/Tokyo")
    with pytest.raises(InvalidInput, match="Mars/Olympus"):
        service.certificates.issue_defaults("tohoku", zone="Mars/Olympus")
    # the tenant's own zone, key type and PKCS#12 profile
    with service.database.transaction() as session:
        session.execute(update(Tenant).where(Tenant.name == "tohoku").values(
            timezone="Asia/Tokyo", key_type="rsa-2048", p12_profile="modern"))
    shown = service.certificates.issue_defaults("tohoku")
    assert (shown.tenant_zone, shown.zone, shown.expires, shown.key_type,
            shown.p12_profile) == ("Asia/Tokyo", "Asia/Tokyo", dt.date(2027, 3, 3), "rsa-2048",
                                   "modern")
