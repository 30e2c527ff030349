"""A pynetdicom patch is applied once, and never to a version it was not written for."""

from __future__ import annotations

import pynetdicom
import pytest

from dicomweb_gw.pacs.patching import PYNETDICOM_VERSIONS, PynetdicomPatch


def test_a_patch_is_applied_once() -> None:
    applied: list[int] = []
    patch = PynetdicomPatch("a test patch", lambda: applied.append(1))
    if not pynetdicom.__version__.startswith(PYNETDICOM_VERSIONS):
        pytest.skip(f"pynetdicom {pynetdicom.__version__} is not one the patches are for")
    assert not patch.installed()
    assert patch.install()
    assert patch.install()
    assert patch.installed()
    assert applied == [1]


def test_another_pynetdicom_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(pynetdicom, "__version__", "9.9.0")
    applied: list[int] = []
    patch = PynetdicomPatch("a test patch", lambda: applied.append(1))
    with caplog.at_level("INFO", logger="dicomweb_gw.pacs.patching"):
        assert patch.install() is False
    assert not patch.installed()
    assert applied == []
    assert "pynetdicom 9.9.0: a test patch is left out" in caplog.text
