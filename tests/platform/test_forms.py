"""Form bodies (`application/x-www-form-urlencoded`, as OAuth2 clients send their token requests):
taken as the object of their fields, with the checks a JSON body gets."""

from __future__ import annotations

import pytest

from shared.http import MAX_FORM_FIELDS, ApiError, ValidationFailed, parse_form


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        (b"", {}),
        (b"grant_type=password&username=ada%40example.com", {"grant_type": "password", "username": "ada@example.com"}),
        (b"a=1&a=2", {"a": "2"}),  # the last of a repeated field, as a duplicated JSON key
        (b"scope=&note=two+words", {"scope": "", "note": "two words"}),
        ("name=Zoë".encode(), {"name": "Zoë"}),
        (b"name=Zo%C3%AB", {"name": "Zoë"}),
    ],
)
def test_a_form_is_the_object_of_its_fields(raw, fields):
    assert parse_form(raw) == fields


@pytest.mark.parametrize("raw", [b"name=\xff\xfe", b"name=%FF%FE"], ids=["raw", "percent-encoded"])
def test_a_form_that_is_not_utf8_is_a_400(raw):
    with pytest.raises(ApiError) as caught:
        parse_form(raw)
    assert caught.value.status == 400


def test_a_form_with_too_many_fields_is_a_400():
    assert len(parse_form(b"&".join(b"f%d=1" % i for i in range(MAX_FORM_FIELDS)))) == MAX_FORM_FIELDS
    with pytest.raises(ApiError) as caught:
        parse_form(b"&".join(b"f%d=1" % i for i in range(MAX_FORM_FIELDS + 1)))
    assert caught.value.status == 400


@pytest.mark.parametrize(("raw", "path"), [(b"password=a%00b", "password"), (b"a%00=1", "a\x00")])
def test_nul_in_a_form_is_a_422(raw, path):
    with pytest.raises(ValidationFailed) as caught:
        parse_form(raw)
    assert list(caught.value.errors) == [path]
