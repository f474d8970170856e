"""What an admin does with orders: list them (a signed-in customer lists their own), set a status
or tracking number by hand, expire an unplaced order. Each change locks the order, checks it
against `domain`'s admin table and announces the status it set; moving an unpaid (offline) order
to the paid status is announced as marking it paid, which is what lets shipping open its
shipment."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from aiohttp import web

from orders import domain, queries, views
from orders.models import ListOrdersQuery, UpdateOrderIn
from shared import http, runtime
from shared.contracts import OrderStatusChanged
from shared.http import ApiError, NotFound, ValidationFailed


async def list_orders(request: web.Request) -> web.Response:
    """Every order for an admin; a signed-in customer's own for them (the same filters); 401 else."""
    customer = http.optional_customer(request)
    if customer is None:
        http.require_admin(request)
    query = http.query_model(request, ListOrdersQuery)
    statuses = [s.strip() for s in (query.status or "").split(",") if s.strip()]
    if any(s not in domain.STATUSES and not domain.is_success(s) for s in statuses):
        raise ValidationFailed.one("status", "The selected status is invalid.")
    date_from = datetime.combine(query.date_from, time.min, UTC) if query.date_from else None
    date_to = None
    if query.date_to is not None and query.date_to < date.max:
        date_to = datetime.combine(query.date_to + timedelta(days=1), time.min, UTC)
    pool = request.app[runtime.POOL]
    total, rows = await queries.list_orders(
        pool,
        statuses=statuses,
        placed_only=query.placed,
        date_from=date_from,
        date_to=date_to,
        limit=query.per_page,
        offset=(query.page - 1) * query.per_page,
        customer_id=customer,
    )
    data = await views.load_order_outs(pool, rows, http.includes(request))
    page = http.paginated(request, data, page=query.page, per_page=query.per_page, total=total)
    return http.model_response(views.OrderList.model_validate(page))


async def update_order(request: web.Request) -> web.Response:
    http.require_admin(request)
    order_id = http.path_id(request)
    body = await http.read_json(request, UpdateOrderIn)
    if body.status is None and body.tracking_no is None:
        raise ValidationFailed.one("status", "The status field is required when tracking no is not present.")
    async with runtime.unit_of_work(request) as uow:
        order = await queries.lock_order(uow.conn, order_id)
        if order is None:
            raise NotFound()
        current, target = order["status"], body.status
        if target is not None and target != current:
            try:
                domain.admin_transition(current, target)
            except domain.TransitionRefused as exc:
                raise ValidationFailed.one("status", str(exc)) from None
            order = await queries.change_status(
                uow.conn,
                order_id,
                target,
                tracking_no=body.tracking_no,
                dispatched_at=datetime.now(UTC) if target == domain.DISPATCHED else None,
            )
            uow.emit(
                OrderStatusChanged(
                    order_id=order_id,
                    from_status=current,
                    to_status=target,
                    tracking_no=body.tracking_no,
                    marks_paid=domain.marks_paid(current, target),
                )
            )
        elif body.tracking_no is not None:
            order = await queries.set_tracking_no(uow.conn, order_id, body.tracking_no)
    return await views.respond(request, order)


async def expire_order(request: web.Request) -> web.Response:
    http.require_admin(request)
    order_id = http.path_id(request)
    async with runtime.unit_of_work(request) as uow:
        order = await queries.lock_order(uow.conn, order_id)
        if order is None:
            raise NotFound()
        if order["status"] != domain.EXPIRED:
            if not domain.can_transition(order["status"], domain.EXPIRED):
                raise ApiError(422, "This order cannot be expired")
            await queries.change_status(uow.conn, order_id, domain.EXPIRED)
            uow.emit(OrderStatusChanged(order_id=order_id, from_status=order["status"], to_status=domain.EXPIRED))
    return web.Response(status=204)
