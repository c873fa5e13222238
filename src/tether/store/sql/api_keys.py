"""API keys."""

from __future__ import annotations

from typing import Any

from tether import serde
from tether.models import ApiKey
from tether.store.sql.core import Conn


async def create_api_key(conn: Conn, key: ApiKey) -> None:
    await conn.execute(
        "INSERT INTO api_keys (id, tenant, name, roles, secret_hash, created_at, revoked_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            key.id,
            key.tenant,
            key.name,
            serde.dumps(key.roles),
            key.secret_hash,
            key.created_at,
            key.revoked_at,
        ),
    )


async def get_api_key(conn: Conn, key_id: str) -> ApiKey | None:
    row = await conn.fetchone(
        "SELECT id, tenant, name, roles, secret_hash, created_at, revoked_at FROM api_keys "
        "WHERE id = %s",
        (key_id,),
    )
    if row is None:
        return None
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        roles=list(serde.loads(row["roles"]) or []),
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def revoke_api_key(conn: Conn, key_id: str, tenant: str | None, now: float) -> bool:
    sql = "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL"
    params: list[Any] = [now, key_id]
    if tenant is not None:
        sql += " AND tenant = %s"
        params.append(tenant)
    return await conn.execute(sql, params) > 0
