"""`GET /orders/types`: the types orders have, as upstream listed them (`{"label": ...}`).

An order's type is the one `POST /orders` was given, else its payment type's name when it is
placed. Only placed orders count: a type sent with an order that was never placed (anyone may
create one) does not reach every storefront's list.
"""

from __future__ import annotations

from aiohttp import web

from orders import queries, views
from shared import http, runtime

# A bound on the answer: types are a handful of names, never a dump of whatever orders carried.
MAX_TYPES = 100


async def list_order_types(request: web.Request) -> web.Response:
    types = await queries.placed_order_types(request.app[runtime.POOL], MAX_TYPES)
    return http.model_response(views.OrderTypeList(data=[views.OrderTypeOut(label=label) for label in types]))
