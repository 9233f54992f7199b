"""A no-op twin of the code location, for bench (b)'s floor: what Dagster alone costs for a day's run.

Built from ``embed_dagster.definitions`` itself, so it keeps the real graph's shape: the same asset
keys, dependencies (with their partition mappings), partitions, backfill policies, the same five
checks (blocking where the real one blocks) and the in-process executor. Every step does nothing
but report its materialization or check result. Running it with the same
``dagster asset materialize --select '*'`` command in a fresh ``DAGSTER_HOME`` gives the wall time
no change inside this project's steps can remove: Python and Dagster starting, the instance, the
run's events, the process exiting.
"""

from __future__ import annotations

import dagster as dg

import embed_dagster.definitions as _location


def _noop_asset(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    (spec,) = asset.specs  # one asset per definition in this code location

    @dg.multi_asset(
        name=asset.node_def.name,
        specs=[spec.replace_attributes(automation_condition=None)],
        backfill_policy=asset.backfill_policy,
    )
    def _noop():
        yield dg.MaterializeResult(asset_key=spec.key)

    return _noop


def _noop_check(checks: dg.AssetChecksDefinition) -> dg.AssetChecksDefinition:
    specs = list(checks.check_specs)

    @dg.multi_asset_check(name=checks.node_def.name, specs=specs)
    def _noop():
        for spec in specs:
            yield dg.AssetCheckResult(asset_key=spec.asset_key, check_name=spec.name, passed=True)

    return _noop


def _twin() -> dg.Definitions:
    assets, external = [], {}
    for asset in _location.defs.assets or []:
        if isinstance(asset, dg.AssetsDefinition) and asset.is_executable:
            assets.append(_noop_asset(asset))
        else:  # external tables and the observable landing files: keys only, nothing runs
            key = asset.key
            external[key] = dg.AssetSpec(key, partitions_def=getattr(asset, "partitions_def", None))
    checks = [_noop_check(c) for c in _location.defs.asset_checks or []]
    return dg.Definitions(
        assets=[*assets, *external.values()], asset_checks=checks, executor=dg.in_process_executor
    )


defs = _twin()
