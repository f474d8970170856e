"""The basket service's public operations: one table for its routes, the gateway and the
OpenAPI document (see `shared.operations`)."""

from __future__ import annotations

from basket import baskets, catalogue, models, views
from shared.operations import Link, Operation

# A basket leads to its order (the orders service's `POST /orders`) and back to itself.
BASKET_ID = "$response.body#/data/id"
BASKET_LINKS = (
    Link("CreateOrder", "POST /orders", body={"basket_id": BASKET_ID}),
    Link("GetBasket", "GET /baskets/{id}", {"path.id": BASKET_ID}),
)

OPERATIONS: list[Operation] = [
    # Catalogue (variants before products, so that /products/variants/x is never read as a product id).
    Operation(
        "GET",
        "/products/variants/{id}",
        catalogue.get_variant,
        "A product variant",
        response=views.VariantResponse,
        errors=(404,),
    ),
    Operation(
        "PUT",
        "/products/variants/{id}",
        catalogue.update_variant,
        "Update a variant",
        admin=True,
        request=models.VariantUpdate,
        response=views.VariantResponse,
        errors=(404, 422),
    ),
    Operation(
        "PUT",
        "/products/variants/{id}/inventory",
        catalogue.set_inventory,
        "Set a variant's inventory",
        admin=True,
        request=models.InventoryUpdate,
        response=views.VariantResponse,
        errors=(404, 422),
    ),
    Operation(
        "GET",
        "/products",
        catalogue.list_products,
        "Products (paginated)",
        query=models.ProductsQuery,
        response=views.ProductCollection,
        errors=(422,),
    ),
    Operation(
        "POST",
        "/products",
        catalogue.create_product,
        "Create a product with variants",
        admin=True,
        request=models.ProductCreate,
        response=views.ProductResponse,
        errors=(422,),
    ),
    Operation(
        "GET", "/products/{id}", catalogue.get_product, "A product", response=views.ProductResponse, errors=(404,)
    ),
    # Baskets and their lines.
    Operation(
        "POST",
        "/baskets",
        baskets.create_basket,
        "Create a basket or replace its lines",
        request=models.CreateBasket,
        response=views.BasketResponse,
        errors=(403, 422),
        links=BASKET_LINKS,
    ),
    Operation("GET", "/baskets/{id}", baskets.get_basket, "A basket", response=views.BasketResponse, errors=(404,)),
    Operation(
        "PUT",
        "/baskets/{id}",
        baskets.update_basket,
        "Update a basket (its currency)",
        request=models.UpdateBasket,
        response=views.BasketResponse,
        errors=(403, 404, 422),
        description="One currency for now: only the basket's own is accepted (the basket unchanged); another is a 422.",
    ),
    Operation(
        "DELETE",
        "/baskets/{id}",
        baskets.delete_basket,
        "Delete a basket and its lines",
        response=views.SuccessResponse,
        errors=(403, 404, 409),
        description="403 once its order is placed; 409 while its order is being processed (stock reserved).",
    ),
    Operation(
        "POST",
        "/baskets/{id}/meta",
        baskets.set_meta,
        "Set one key of a basket's meta",
        request=models.BasketMeta,
        response=views.BasketResponse,
        errors=(403, 404, 422),
    ),
    Operation(
        "POST",
        "/basket-lines",
        baskets.add_lines,
        "Add lines to a basket",
        request=models.AddLines,
        response=views.BasketResponse,
        errors=(403, 422),
        links=BASKET_LINKS,
    ),
    Operation(
        "DELETE",
        "/basket-lines",
        baskets.delete_lines,
        "Delete several lines",
        request=models.DeleteLines,
        response=views.BasketResponse,
        errors=(403, 422),
    ),
    Operation(
        "PUT",
        "/basket-lines/{id}",
        baskets.update_line,
        "Set a line's quantity",
        request=models.LineQuantity,
        response=views.BasketResponse,
        errors=(403, 404, 422),
    ),
    Operation(
        "DELETE",
        "/basket-lines/{id}",
        baskets.delete_line,
        "Delete a line",
        response=views.BasketResponse,
        errors=(403, 404),
    ),
    Operation(
        "PUT",
        "/basket-lines/{id}/add",
        baskets.add_to_line,
        "Increase a line's quantity",
        request=models.LineQuantityChange,
        response=views.BasketResponse,
        errors=(403, 404, 422),
    ),
    Operation(
        "POST",
        "/basket-lines/{id}/add",
        baskets.add_to_line,
        "Increase a line's quantity (an alias of the PUT)",
        request=models.LineQuantityChange,
        response=views.BasketResponse,
        errors=(403, 404, 422),
    ),
    Operation(
        "PUT",
        "/basket-lines/{id}/remove",
        baskets.remove_from_line,
        "Decrease a line's quantity",
        request=models.LineQuantityChange,
        response=views.BasketResponse,
        errors=(403, 404, 422),
    ),
]
