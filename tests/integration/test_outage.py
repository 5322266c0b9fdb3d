"""test_outage.py - the database goes away and comes back: requests during
the outage get 503 problem+json, the worker survives, and requests after
recovery succeed on every worker (issue 2).  Runs last: it stops MariaDB."""
import os
import subprocess

import time

from qc import check, done, get, is_problem, new_user, parallel, VAR

SRC = os.environ["QC_SRC"]
uid, key, _ = new_user("payg")
check(get("/api/v1/me", key=key).status == 200, "before the outage: 200")

subprocess.run(["bash", f"{SRC}/scripts/mariadb.sh", "stop", VAR], check=True,
               capture_output=True)
# the auth cache may answer /me from memory; a fresh key never is
r = get("/api/v1/me", key="qck_" + "Z" * 32)
check(is_problem(r, 503) and r.header("retry-after"), "during the outage: 503 with Retry-After", r)
time.sleep(1.1)  # let the one-second health read cache lapse everywhere
# concurrent requests spread over the worker pool
statuses = [r.status if hasattr(r, "status") else repr(r)
            for r in parallel(16, lambda i: get("/api/v1/health"))]
check(all(s == 503 for s in statuses), "health reports the outage on every worker", statuses)

subprocess.run(["bash", f"{SRC}/scripts/mariadb.sh", "start", VAR], check=True,
               capture_output=True)
time.sleep(1.1)  # the health read cache lives one second
results = [r.status if hasattr(r, "status") else repr(r)
           for r in parallel(16, lambda i: get("/api/v1/me", key=key))]
check(all(s == 200 for s in results), "after recovery: every request succeeds", results)
r = get("/api/v1/health")
check(r.status == 200 and r.json["database"] is True, "health recovers", r)
done()
