"""Request/reply responders of the customers service."""

from __future__ import annotations

from aiohttp import web

from customers import queries
from shared import runtime
from shared.bus import Responder
from shared.contracts import Address, CustomerAddressReply, GetCustomerAddress
from shared.http import is_id


def responders(app: web.Application) -> list[Responder]:
    async def on_get_customer_address(request: GetCustomerAddress) -> CustomerAddressReply:
        """An address of the customer's book in the shape of an order's address."""
        if not (is_id(request.customer_id) and is_id(request.address_id)):
            return CustomerAddressReply()  # no row has such an id (and Postgres text cannot hold NUL)
        row = await queries.address_of(app[runtime.POOL], request.address_id, request.customer_id)
        if row is None:
            return CustomerAddressReply()
        return CustomerAddressReply(
            address=Address(
                firstname=row["firstname"],
                lastname=row["lastname"],
                company_name=row["company_name"],
                address=row["address"],
                address_two=row["address_two"],
                address_three=row["address_three"],
                city=row["city"],
                state=row["state"],
                zip=row["postal_code"],
                country=row["country"],
                phone=row["phone"],
                email=row["email"],
            )
        )

    return [Responder(GetCustomerAddress, on_get_customer_address)]
