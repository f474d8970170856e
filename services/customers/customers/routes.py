"""The customers service's public operations: routes, gateway facts and OpenAPI models.

`customer=True`: the gateway needs the customer's access token (from `POST /oauth/token`) and
passes the customer on as the signed identity; the service checks it again.
"""

from __future__ import annotations

from customers import handlers
from customers.models import AddressIn, AddressUpdate, ChangePasswordIn, IncludeQuery, RegisterIn, RevokeIn, TokenIn
from customers.views import AddressCollection, AddressResponse, MessageResponse, TokenResponse, UserResponse
from shared.operations import Link, Operation

OPERATIONS: list[Operation] = [
    Operation(
        "POST",
        "/customers",
        handlers.register,
        "Register a customer",
        description=(
            "A new customer account, answered as its user (`?include=customer` for the customer's "
            "details). The email is unique whatever its case; the password is at least 8 characters "
            "and not a commonly used one. Sign in with `POST /oauth/token` next."
        ),
        request=RegisterIn,
        query=IncludeQuery,
        response=UserResponse,
        status=201,
        errors=(422,),
        links=(
            Link(
                "signIn",
                "POST /oauth/token",
                body={"grant_type": "password", "username": "$request.body#/email"},
                description="Sign in as the new customer (with the password chosen)",
            ),
        ),
    ),
    Operation(
        "POST",
        "/oauth/token",
        handlers.issue_token,
        "Sign in, or refresh the tokens",
        description=(
            "OAuth2 (RFC 6749), as a form or as JSON. `grant_type=password` with `username` (the email) "
            "and `password`; `grant_type=refresh_token` with `refresh_token`. Answers a short-lived "
            "access token (a bearer JWT for the customer's operations) and a refresh token, which is "
            "spent by its use: each refresh answers a new one. Wrong credentials or a refresh token "
            "that is unknown, expired, revoked or spent are a 400. Repeated failed sign-ins for one "
            "email or from one client are slowed, then refused for a while: a 429 with `Retry-After`."
        ),
        request=TokenIn,
        response=TokenResponse,
        errors=(400, 422, 429),
    ),
    Operation(
        "POST",
        "/oauth/revoke",
        handlers.revoke_token,
        "Sign out",
        description=(
            "RFC 7009: `token` is a refresh token; its sign-in session ends (every refresh token of it). "
            "The same answer for a token that is unknown or revoked already. An access token cannot be "
            "revoked: it expires within minutes."
        ),
        request=RevokeIn,
        response=MessageResponse,
        errors=(422,),
    ),
    Operation(
        "GET",
        "/users/current",
        handlers.current_user,
        "The signed-in customer",
        customer=True,
        query=IncludeQuery,
        response=UserResponse,
        errors=(401, 422),
    ),
    Operation(
        "POST",
        "/account/password",
        handlers.change_password,
        "Change the password",
        description=(
            "With the current password. Every sign-in session of the customer ends (sign in again); "
            "repeated wrong current passwords are throttled as sign-ins are (429)."
        ),
        customer=True,
        request=ChangePasswordIn,
        response=MessageResponse,
        errors=(401, 422, 429),
    ),
    Operation(
        "GET",
        "/user/addresses",
        handlers.list_addresses,
        "The signed-in customer's addresses",
        customer=True,
        response=AddressCollection,
        errors=(401,),
    ),
    Operation(
        "POST",
        "/addresses",
        handlers.create_address,
        "Add an address to the book",
        customer=True,
        request=AddressIn,
        response=AddressResponse,
        status=201,
        errors=(401, 422),
        links=(
            Link(
                "changeAddress",
                "PUT /addresses/{id}",
                parameters={"path.id": "$response.body#/data/id"},
                description="Change the address just added",
            ),
        ),
    ),
    Operation(
        "PUT",
        "/addresses/{id}",
        handlers.update_address,
        "Change an address",
        description="Only the fields sent change. Another customer's address is a 404.",
        customer=True,
        request=AddressUpdate,
        response=AddressResponse,
        errors=(401, 404, 422),
    ),
    Operation(
        "DELETE",
        "/addresses/{id}",
        handlers.delete_address,
        "Delete an address",
        description="Another customer's address is a 404.",
        customer=True,
        status=204,
        errors=(401, 404),
    ),
]
