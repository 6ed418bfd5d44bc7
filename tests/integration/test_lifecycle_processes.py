"""Two lifecycle passes in two real processes at once, on an SQLite file and on PostgreSQL:
never both at work (the ``lifecycle`` lease, ca.service.leases). Each process is
``tegata lifecycle run``, as a second worker or replica runs it.

Whichever starts first, the outcome is one of two: the second is refused while the first
holds the lease, or it comes after and finds nothing due. A pass that both ran would split
the CRL renewals between them, or make a CA's CRL twice.
"""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import func, select

from ca.db.models import Crl
from ca.settings import Settings
from tests.served import ROOT, live_service, server_env

TENANTS = 40  # CRLs the first pass makes: long enough for the two passes to meet
REFUSED = "another lifecycle run is in progress"


def test_two_processes_running_the_lifecycle_at_once_never_both_work(
        settings: Settings) -> None:
    with live_service(settings, "hokkaido", "北海道本部") as service:
        for n in range(TENANTS):
            service.hierarchy.create_tenant(f"shiten-{n:02d}", display_name=f"支店{n:02d}",
                                  ca_key_type="ec-p256")
        command = [sys.executable, "-m", "cli.main", "lifecycle", "run", "--json"]
        runs = [subprocess.Popen(command, cwd=ROOT, env=server_env(settings),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outcomes = [run.communicate(timeout=300) for run in runs]
        with service.database.reading() as session:
            per_ca = dict(session.execute(select(Crl.authority_id, func.count())
                                          .group_by(Crl.authority_id)).all())
    cas = TENANTS + 3  # and the root, "default" and "hokkaido"
    assert per_ca == {authority: 1 for authority in per_ca} and len(per_ca) == cas
    worked = [json.loads(out)["crls"] for (out, _err), run in zip(outcomes, runs, strict=True)
              if run.returncode == 0]
    refused = [err for (_out, err), run in zip(outcomes, runs, strict=True)
               if run.returncode != 0]
    assert sorted(worked) in ([cas], [0, cas])
    assert all(REFUSED in err for err in refused) and len(worked) + len(refused) == 2
