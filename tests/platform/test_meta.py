"""`shared.http.Meta`, the free-form `meta` of baskets, lines and orders: an object of at most
8 KiB as JSON, 50 keys per object, 5 levels; PHP's `[]` is taken as `{}` (issue 17)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from shared.http import META_MAX_BYTES, META_MAX_DEPTH, META_MAX_KEYS, Meta

META = TypeAdapter(Meta)


def nested(levels: int) -> dict[str, Any]:
    """An object `levels` objects deep: {"a": {"a": ... {} ...}}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def sized(total: int) -> dict[str, Any]:
    value = {"k": "x" * (total - len(b'{"k":""}'))}
    assert len(orjson.dumps(value)) == total
    return value


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"gift": True, "note": "for Ada", "tags": ["a", "b"], "n": 1.5, "none": None},
        sized(META_MAX_BYTES),
        {f"k{i}": i for i in range(META_MAX_KEYS)},
        {"inner": {f"k{i}": i for i in range(META_MAX_KEYS)}},
        nested(META_MAX_DEPTH),
        {"a": {"b": {"c": {"list": [1, 2, 3]}}}},  # a list is a level: 5 in all
        {"items": list(range(1000))},  # a list's items are not keys
    ],
    ids=["empty", "plain", "size", "keys", "inner-keys", "depth", "list-depth", "long-list"],
)
def test_meta_within_its_limits_is_kept_as_it_is(value: dict[str, Any]) -> None:
    assert META.validate_python(value) == value


def test_an_empty_list_is_the_empty_object() -> None:
    assert META.validate_python([]) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (sized(META_MAX_BYTES + 1), f"meta must be at most {META_MAX_BYTES} bytes as JSON"),
        ({f"k{i}": i for i in range(META_MAX_KEYS + 1)}, f"meta objects may have at most {META_MAX_KEYS} keys"),
        (
            {"a": [{"b": {f"k{i}": i for i in range(META_MAX_KEYS + 1)}}]},
            f"meta objects may have at most {META_MAX_KEYS} keys",
        ),
        (nested(META_MAX_DEPTH + 1), f"meta may be nested at most {META_MAX_DEPTH} levels deep"),
        ({"a": {"b": {"c": {"d": [[1]]}}}}, f"meta may be nested at most {META_MAX_DEPTH} levels deep"),
        # Deeper than orjson can encode (255): still a validation error, never its TypeError.
        (nested(300), f"meta may be nested at most {META_MAX_DEPTH} levels deep"),
    ],
    ids=["size", "keys", "inner-keys", "depth", "list-depth", "past-the-encoder"],
)
def test_meta_past_a_limit_is_refused_with_the_limit(value: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        META.validate_python(value)
    assert [error["msg"] for error in refused.value.errors()] == [f"Value error, {message}"]


@pytest.mark.parametrize("value", [[1, 2], "text", 3, None])
def test_meta_is_an_object(value: Any) -> None:
    with pytest.raises(ValidationError):
        META.validate_python(value)
