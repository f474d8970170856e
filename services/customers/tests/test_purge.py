"""The purger deletes what no longer counts (expired refresh tokens, ended sessions, forgotten
failure counts) and keeps everything that still does."""

from __future__ import annotations

from datetime import timedelta

from customers import domain, sweepers
from services.customers.tests.testkit import API, new_client_address, register, sign_in


async def test_the_purger_keeps_what_counts_and_deletes_the_rest(client, pool):
    account = await register(client)
    live, expired, revoked = [await sign_in(client, account) for _ in range(3)]
    await pool.execute(
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
        domain.refresh_token_hash(expired["refresh_token"]),
    )
    response = await client.post(f"{API}/oauth/revoke", json={"token": revoked["refresh_token"]})
    assert response.status == 200
    recent, old, zero = (domain.throttle_key("client", new_client_address()) for _ in range(3))
    await pool.executemany(
        "INSERT INTO signin_failures (key_hash, failures, last_failure_at) VALUES ($1, $2, now() - $3::interval)",
        [(recent, 3, timedelta(minutes=10)), (old, 3, timedelta(hours=2)), (zero, 0, timedelta(minutes=1))],
    )

    assert await sweepers.purge(pool) >= 5

    sessions = await pool.fetch("SELECT id FROM sessions WHERE customer_id = $1", account.id)
    assert len(sessions) == 1
    tokens = await pool.fetch("SELECT token_hash FROM refresh_tokens WHERE session_id = $1", sessions[0]["id"])
    assert [row["token_hash"] for row in tokens] == [domain.refresh_token_hash(live["refresh_token"])]
    kept = await pool.fetch("SELECT key_hash FROM signin_failures WHERE key_hash = ANY($1)", [recent, old, zero])
    assert [row["key_hash"] for row in kept] == [recent]
