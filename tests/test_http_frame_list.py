"""The frame list of a frames URL: numbers from 1, order and duplicates kept, else 400."""

from __future__ import annotations

import pytest

from dicomweb_gw.errors import BadRequest
from dicomweb_gw.http.frame_list import parse_frame_list


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", [1]), ("1,3,5", [1, 3, 5]), ("5,1,5", [5, 1, 5]), (" 2 , 4 ", [2, 4]), ("120", [120])],
)
def test_parse_frame_list(text: str, expected: list[int]) -> None:
    assert parse_frame_list(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "0", "1,0", "-1", "1,,2", "1,", "a", "1.5", "+1", "\u0661"]
)
def test_parse_frame_list_rejects(text: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_frame_list(text)
    assert raised.value.status_code == 400
