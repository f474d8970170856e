"""Countries: `GET /countries`, `GET /countries/{id}` and the admin's `PUT /countries/{id}`.

The list is ISO 3166 as pycountry knows it (`COUNTRIES`); the orders service keeps only
what an admin set on a country (`enabled`, `preferred`), in its `countries` table. Addresses may
only name an enabled country (`details.py`).
"""

from __future__ import annotations

from aiohttp import web

from orders import domain, queries, views
from orders.models import CountriesQuery, CountryIn
from shared import http, runtime
from shared.countries import COUNTRIES, COUNTRIES_BY_ID, Country
from shared.http import NotFound


async def list_countries(request: web.Request) -> web.Response:
    query = http.query_model(request, CountriesQuery)
    flags = await queries.country_flags(request.app[runtime.POOL])
    listed = [views.country_out(country, flags.get(country.alpha_2)) for country in COUNTRIES]
    listed = [
        country
        for country in listed
        if (country.enabled or query.show_disabled) and (country.preferred or not query.only_preferred)
    ]
    if not query.paginate:
        return http.model_response(views.CountryCollection(data=listed))
    offset = (query.page - 1) * query.per_page
    page = listed[offset : offset + query.per_page]
    body = http.paginated(request, page, page=query.page, per_page=query.per_page, total=len(listed))
    return http.model_response(views.CountryCollection.model_validate(body))


async def get_country(request: web.Request) -> web.Response:
    country = _country(request)
    flags = await queries.country_flags_of(request.app[runtime.POOL], country.alpha_2)
    return http.model_response(views.CountryResponse(data=views.country_out(country, flags)))


async def update_country(request: web.Request) -> web.Response:
    """Set a country's flags; one statement, so concurrent changes of different flags all stay."""
    http.require_admin(request)
    country = _country(request)
    body = await http.read_json(request, CountryIn)
    async with runtime.unit_of_work(request) as uow:
        flags = await queries.set_country_flags(uow.conn, country.alpha_2, body.enabled, body.preferred)
    return http.model_response(views.CountryResponse(data=views.country_out(country, flags)))


async def is_enabled(request: web.Request, alpha_2: str) -> bool:
    """Whether addresses may name the country (a country no admin has set is enabled)."""
    flags = await queries.country_flags_of(request.app[runtime.POOL], alpha_2)
    return flags["enabled"] if flags else domain.ENABLED_BY_DEFAULT


def _country(request: web.Request) -> Country:
    country = COUNTRIES_BY_ID.get(http.path_id(request))
    if country is None:
        raise NotFound()
    return country
