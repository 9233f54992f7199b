"""Materialize partitions in a process of their own, for the kill and concurrency tests.

``python -m embed_dagster_tests.support.faults_run CONFIG_JSON`` (see ``faults_helpers.run_config``).
A separate process is what a Dagster run is in production, and the only thing SIGKILL can kill
without taking the test with it. Each partition prints one ``FAULTS_RUN_RESULT {json}`` line.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[1])
    from embed_dagster_tests.support.faults_helpers import (
        check_results,
        make_resources,
        materialize,
        step_failures,
    )

    options = {k: cfg[k] for k in ("batch_size", "max_concurrency", "timeout_s", "max_retries") if k in cfg}
    resources = make_resources(
        cfg["db"], cfg["landing"], cfg["base_url"], redis_url=cfg.get("redis_url"), **options
    )
    ok = True
    for key in cfg["partitions"]:
        print(f"FAULTS_RUN_START {key}", flush=True)
        result = materialize(resources, key)
        ok = ok and result.success
        line = {
            "partition": key,
            "success": result.success,
            "checks": check_results(result),
            "failures": step_failures(result),
        }
        print("FAULTS_RUN_RESULT " + json.dumps(line), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
