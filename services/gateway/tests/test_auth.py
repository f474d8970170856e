"""Admin auth at the gateway: a bearer HS256 JWT with the `admin` role; the identity header is ours alone."""

from __future__ import annotations

import secrets
import time
import warnings

import jwt
import orjson
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from shared.identity import IDENTITY_HEADER, SIGNATURE_HEADER, IdentityError, verify_identity
from shared.settings import DEV_IDENTITY_SIGNING_KEY, KNOWN_DEV_SECRETS

SECRET = "test-secret-for-the-gateway-0123456789-long-enough-for-any-hmac-algorithm"
ADMIN_PATH = "/api/v1/orders"  # GET /orders is an admin route
STOREFRONT_PATH = "/api/v1/products"


@pytest.fixture
async def client(make_gateway):
    return await make_gateway(admin_jwt_secret=SECRET)


def settings() -> GatewaySettings:
    return GatewaySettings(admin_jwt_secret=SECRET)


def token(**claims) -> str:
    now = int(time.time())
    payload = {"sub": "ops@example.com", "roles": ["admin"], "iat": now, "exp": now + 60} | claims
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256")


async def assert_unauthorized(client, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get(ADMIN_PATH, headers=headers)
    assert response.status == 401
    assert await response.json() == {"error": {"http_code": 401, "message": "Unauthorized"}}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "X-Upstream" not in response.headers  # never forwarded


async def test_missing_token_is_401(client):
    await assert_unauthorized(client, None)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer not-a-jwt", "Bearer a.b.c", "Basic YWRtaW46YWRtaW4=", "Token abc", "bearer"],
)
async def test_malformed_token_is_401(client, authorization):
    await assert_unauthorized(client, authorization)


async def test_expired_token_is_401(client):
    await assert_unauthorized(client, f"Bearer {token(exp=int(time.time()) - 5)}")


async def test_token_without_expiry_is_401(client):
    await assert_unauthorized(client, f"Bearer {token(exp=None)}")


async def test_wrong_signature_is_401(client):
    forged = jwt.encode(
        {"sub": "x", "roles": ["admin"], "exp": int(time.time()) + 60}, "another-secret-0123456789abcdef!", "HS256"
    )
    await assert_unauthorized(client, f"Bearer {forged}")


async def test_tampered_payload_is_401(client):
    header, _, signature = token(roles=["viewer"]).split(".")
    payload = jwt.utils.base64url_encode(orjson.dumps({"sub": "x", "roles": ["admin"], "exp": 2**31})).decode()
    await assert_unauthorized(client, f"Bearer {header}.{payload}.{signature}")


async def test_algorithm_none_is_401(client):
    unsigned = jwt.encode({"sub": "x", "roles": ["admin"], "exp": int(time.time()) + 60}, None, algorithm="none")
    await assert_unauthorized(client, f"Bearer {unsigned}")


async def test_other_hmac_algorithm_is_401(client):
    # Only HS256 is accepted, even when signed with the right key.
    other = jwt.encode({"sub": "x", "roles": ["admin"], "exp": int(time.time()) + 60}, SECRET, algorithm="HS512")
    await assert_unauthorized(client, f"Bearer {other}")


async def test_valid_token_without_admin_role_is_403(client):
    response = await client.get(ADMIN_PATH, headers={"Authorization": f"Bearer {token(roles=['viewer'])}"})
    assert response.status == 403
    assert await response.json() == {"error": {"http_code": 403, "message": "Forbidden"}}
    assert "X-Upstream" not in response.headers


async def test_valid_admin_token_is_forwarded_with_the_identity_only(client):
    response = await client.get(ADMIN_PATH, headers={"Authorization": f"Bearer {mint_token(settings(), 'ops')}"})
    assert response.status == 200
    seen = (await response.json())["headers"]
    assert orjson.loads(seen[IDENTITY_HEADER.lower()]) == {"sub": "ops", "roles": ["admin"]}
    assert "authorization" not in seen  # the credential stops at the gateway


async def test_role_claim_as_a_string_is_accepted(client):
    response = await client.get(ADMIN_PATH, headers={"Authorization": f"Bearer {token(roles=None, role='admin')}"})
    assert response.status == 200


async def test_identity_header_from_a_client_is_stripped_on_storefront_routes(client):
    forged = orjson.dumps({"sub": "mallory", "roles": ["admin"]}).decode()
    response = await client.get(STOREFRONT_PATH, headers={IDENTITY_HEADER: forged})
    assert response.status == 200
    assert IDENTITY_HEADER.lower() not in (await response.json())["headers"]


async def test_identity_header_from_a_client_is_replaced_on_admin_routes(client):
    forged = orjson.dumps({"sub": "mallory", "roles": ["admin"]}).decode()
    response = await client.get(
        ADMIN_PATH, headers={IDENTITY_HEADER: forged, "Authorization": f"Bearer {token(sub='ops')}"}
    )
    seen = (await response.json())["headers"]
    assert orjson.loads(seen[IDENTITY_HEADER.lower()]) == {"sub": "ops", "roles": ["admin"]}


async def test_forged_identity_without_token_is_401_on_admin_routes(client):
    forged = orjson.dumps({"sub": "mallory", "roles": ["admin"]}).decode()
    response = await client.get(ADMIN_PATH, headers={IDENTITY_HEADER: forged})
    assert response.status == 401


async def test_issuer_and_audience_are_checked_when_configured(make_gateway):
    client = await make_gateway(admin_jwt_secret=SECRET, admin_jwt_issuer="ops", admin_jwt_audience="commerce")
    good = token(iss="ops", aud="commerce")
    assert (await client.get(ADMIN_PATH, headers={"Authorization": f"Bearer {good}"})).status == 200
    for bad in (token(iss="other", aud="commerce"), token(iss="ops", aud="other"), token()):
        assert (await client.get(ADMIN_PATH, headers={"Authorization": f"Bearer {bad}"})).status == 401


async def test_storefront_routes_need_no_token(client):
    response = await client.get(STOREFRONT_PATH)
    assert response.status == 200


# --- token rules (issue 17): iat required, a maximum lifetime, iss and aud in production ---------


async def test_token_without_iat_is_401(client):
    await assert_unauthorized(client, f"Bearer {token(iat=None)}")


async def test_token_issued_in_the_future_is_401(client):
    now = int(time.time())
    await assert_unauthorized(client, f"Bearer {token(iat=now + 120, exp=now + 180)}")


async def test_token_living_longer_than_the_maximum_is_401(client):
    now = int(time.time())
    await assert_unauthorized(client, f"Bearer {token(iat=now, exp=now + 3600 + 1)}")
    response = await client.get(ADMIN_PATH, headers={"Authorization": f"Bearer {token(iat=now, exp=now + 3600)}"})
    assert response.status == 200


PRODUCTION_KEY = secrets.token_urlsafe(48)
PRODUCTION = {
    "environment": "production",
    "admin_jwt_secret": PRODUCTION_KEY,
    "admin_jwt_issuer": "https://id.example.com",
    "admin_jwt_audience": "commerce-admin",
    "identity_signing_key": secrets.token_urlsafe(48),
    "customer_token_secret": secrets.token_urlsafe(48),
}


def production_token(key: str = PRODUCTION_KEY, **claims) -> str:
    now = int(time.time())
    payload = {
        "sub": "ops",
        "roles": ["admin"],
        "iat": now,
        "exp": now + 60,
        "iss": PRODUCTION["admin_jwt_issuer"],
        "aud": PRODUCTION["admin_jwt_audience"],
    } | claims
    with warnings.catch_warnings():
        # Some keys of the repository are short ("CHANGE-ME"): PyJWT warns, and they must still sign.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="HS256")


@pytest.mark.parametrize("known", sorted(KNOWN_DEV_SECRETS))
async def test_production_refuses_tokens_signed_with_any_key_of_the_repository(make_gateway, known):
    client = await make_gateway(**PRODUCTION)
    assert GatewaySettings(**PRODUCTION).production_problems() == []
    await assert_unauthorized(client, f"Bearer {production_token(known)}")
    response = await client.get(ADMIN_PATH, headers={"Authorization": f"Bearer {production_token()}"})
    assert response.status == 200


@pytest.mark.parametrize("missing", ["iss", "aud"])
async def test_production_requires_issuer_and_audience_claims(make_gateway, missing):
    client = await make_gateway(**PRODUCTION)
    await assert_unauthorized(client, f"Bearer {production_token(**{missing: None})}")


async def test_the_forwarded_identity_is_signed_with_the_identity_key(make_gateway):
    client = await make_gateway(**PRODUCTION)
    response = await client.get(ADMIN_PATH, headers={"Authorization": f"Bearer {production_token()}"})
    seen = (await response.json())["headers"]
    payload, signature = seen[IDENTITY_HEADER.lower()], seen[SIGNATURE_HEADER.lower()]
    assert verify_identity(payload, signature, PRODUCTION["identity_signing_key"]) == {
        "sub": "ops",
        "roles": ["admin"],
    }
    with pytest.raises(IdentityError):
        verify_identity(payload, signature, DEV_IDENTITY_SIGNING_KEY)


async def test_a_client_signature_header_is_never_forwarded(client):
    response = await client.get(STOREFRONT_PATH, headers={SIGNATURE_HEADER: "t=1,v1=" + "0" * 64})
    assert SIGNATURE_HEADER.lower() not in (await response.json())["headers"]
