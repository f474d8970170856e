"""The HTTP edge helpers: bad input is refused before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from shared.http import MAX_JSON_DEPTH, NUL_MESSAGE, ApiError, ValidationFailed, parse_json, refuse_nul
from shared.idempotency import request_hash


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"name": "a\x00b"}, "name"),
        ({"meta": {"note": "\x00"}}, "meta.note"),
        ({"lines": [{"id": "x"}, {"id": "y\x00"}]}, "lines.1.id"),
        ({"meta": {"k\x00": "v"}}, "meta.k\x00"),
    ],
)
def test_nul_characters_are_refused_with_their_field_path(data, path):
    with pytest.raises(ValidationFailed) as caught:
        refuse_nul(data)
    assert caught.value.errors == {path: [NUL_MESSAGE]}


def test_clean_input_passes():
    refuse_nul({"name": "Ada", "meta": {"tags": ["a", "b"], "n": 1, "x": None}})


def test_the_nul_check_is_iterative_however_deep():
    """orjson parses up to 1024 levels; the recursive check used to die of RecursionError past
    Python's limit, a 500. Iterative, it finds a NUL at any depth, with its path."""
    data: Any = "a\x00"
    for _ in range(5000):
        data = [data]
    with pytest.raises(ValidationFailed) as caught:
        refuse_nul({"deep": data})
    assert caught.value.errors == {"deep" + ".0" * 5000: [NUL_MESSAGE]}


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"a": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), 400),  # past the cap
        (b"[" * 300 + b"]" * 300, 400),  # more than orjson can write back (its limit is 255)
        (b"[" * 10_000 + b"]" * 10_000, 400),  # past orjson's own parsing limit
        (b'{"a": "\xff"}', 400),  # not UTF-8
        (b'{"a": "\\ud800"}', 400),  # a lone surrogate
        (b'{"a": 1e400}', 400),  # not a finite number
        (b'{"a": 1,', 400),
        (b'{"a": ["x\\u0000"]}', 422),
    ],
)
def test_bodies_that_are_not_acceptable_json_are_a_4xx(raw, status):
    with pytest.raises((ApiError, ValidationFailed)) as caught:
        parse_json(raw)
    assert (caught.value.status if isinstance(caught.value, ApiError) else 422) == status


def test_acceptable_json_parses_and_a_duplicated_key_takes_its_last_value():
    at_the_cap = b'{"a": ' * (MAX_JSON_DEPTH - 1) + b"[1]" + b"}" * (MAX_JSON_DEPTH - 1)
    assert parse_json(at_the_cap) is not None
    assert parse_json(b'{"a": 1, "a": 2}') == {"a": 2}
    assert parse_json(b"  ") == {}


def test_an_idempotency_hash_never_fails_on_a_body_orjson_cannot_write_back():
    deep = b"[" * 300 + b"]" * 300
    assert request_hash("POST", "/x", deep) == request_hash("POST", "/x", deep) != request_hash("POST", "/x", b"[]")
