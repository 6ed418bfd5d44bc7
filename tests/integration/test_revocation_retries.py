"""A status change given up by the database to break a deadlock is made again, up to three
attempts in all; any other storage failure is reported at once (mutation pass: the
number of attempts and the retry condition could change unnoticed). The deadlock is
simulated with PostgreSQL's SQLSTATE on an error from the certificate's lock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from ca.errors import StorageError
from ca.service import Service, transitions
from ca.states import State
from tests.support.issuing import one_sakura_certificate


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"simulated failure, SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.fixture
def serial(service: Service) -> str:
    return one_sakura_certificate(service)


@pytest.fixture
def failures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """SQLSTATEs for the next locks to fail with, first to last; the attempts are counted."""
    planned: list[str] = []
    real = transitions.lock

    def lock(session: object, cert: object) -> None:
        if planned:
            raise OperationalError("SELECT ... FOR UPDATE", {}, DriverError(planned.pop(0)))
        real(session, cert)  # type: ignore[arg-type]

    monkeypatch.setattr(transitions, "lock", lock)
    yield planned


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"], ids=["deadlock", "serialization"])
def test_a_revocation_given_up_twice_goes_through_on_the_third_attempt(
        service: Service, serial: str, failures: list[str], sqlstate: str) -> None:
    failures.extend([sqlstate, sqlstate])

    view = service.revocation.revoke("sakura", serial, reason="keyCompromise")

    assert failures == []
    assert view.state is State.REVOKED
    assert service.certificates.get(serial).state is State.REVOKED


def test_a_revocation_given_up_three_times_is_reported_and_changes_nothing(
        service: Service, serial: str, failures: list[str]) -> None:
    failures.extend(["40P01"] * 4)

    with pytest.raises(StorageError, match="database error: OperationalError"):
        service.revocation.revoke("sakura", serial, reason="keyCompromise")

    assert failures == ["40P01"]  # three attempts, the fourth failure never asked for
    assert service.certificates.get(serial).state is State.VALID


@pytest.mark.parametrize("first", [True, False], ids=["first-attempt", "after-a-deadlock"])
def test_another_storage_failure_is_reported_at_once(
        service: Service, serial: str, failures: list[str], first: bool) -> None:
    failures.extend((["40P01"] if not first else []) + ["53100", "40P01"])

    with pytest.raises(StorageError):
        service.revocation.suspend("sakura", serial)

    assert failures == ["40P01"]  # not tried again after the disk-full error
    assert service.certificates.get(serial).state is State.VALID
