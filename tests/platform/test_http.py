"""The HTTP edge helpers: bad input is refused before anything runs."""

from __future__ import annotations

import pytest

from shared.http import NUL_MESSAGE, ValidationFailed, refuse_nul


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
