"""Workflow rollouts and the per-version figures of a workflow's recent tasks (ADR 84)."""

from __future__ import annotations

from typing import Any

from tether.ids import id_floor
from tether.models.rollouts import Rollout, VersionFigures
from tether.store.sql.core import Conn, Row

COLUMNS = "tenant, workflow, stable, canary, share, started_at, updated_by, updated_at"


def _rollout(row: Row) -> Rollout:
    return Rollout(
        tenant=row["tenant"],
        workflow=row["workflow"],
        stable=row["stable"],
        canary=row["canary"],
        share=float(row["share"]),
        started_at=row["started_at"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


async def list_rollouts(conn: Conn) -> list[Rollout]:
    rows = await conn.fetchall(f"SELECT {COLUMNS} FROM workflow_rollouts ORDER BY tenant, workflow")
    return [_rollout(r) for r in rows]


async def put_rollout(conn: Conn, r: Rollout) -> Rollout:
    await conn.execute(
        f"INSERT INTO workflow_rollouts ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (tenant, workflow) DO UPDATE SET stable = excluded.stable, "
        "canary = excluded.canary, share = excluded.share, started_at = excluded.started_at, "
        "updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        (
            r.tenant,
            r.workflow,
            r.stable,
            r.canary,
            r.share,
            r.started_at,
            r.updated_by,
            r.updated_at,
        ),
    )
    return r


async def delete_rollout(conn: Conn, tenant: str, workflow: str) -> bool:
    row = await conn.fetchone(
        "DELETE FROM workflow_rollouts WHERE tenant = %s AND workflow = %s RETURNING tenant",
        (tenant, workflow),
    )
    return row is not None


async def version_figures(
    conn: Conn, tenant: str | None, workflow: str, since: float
) -> list[VersionFigures]:
    # Ids are UUIDv7: "created since" is an id range, which the (tenant, id) index reads.
    sql = (
        "SELECT workflow_version AS version, status, COUNT(*) AS n FROM tasks "
        "WHERE workflow = %s AND id >= %s"
    )
    params: list[Any] = [workflow, id_floor(since)]
    if tenant is not None:
        sql += " AND tenant = %s"
        params.append(tenant)
    rows = await conn.fetchall(sql + " GROUP BY workflow_version, status", tuple(params))
    figures: dict[int, VersionFigures] = {}
    for r in rows:
        version = int(r["version"])
        figures.setdefault(version, VersionFigures(version)).counts[r["status"]] = int(r["n"])
    return [figures[v] for v in sorted(figures)]
