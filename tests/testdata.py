"""pydicom's test files for the tests, skipping a test (with what to install) when one is missing.

One helper for every test module, importable as ``from testdata import pydicom_file``
because ``tests/`` is on ``sys.path`` (``pythonpath`` in pyproject.toml's
``[tool.pytest.ini_options]``). It is a plain function, not a fixture, so module-level
helpers and module-scoped fixtures can call it too. (No name here starts with ``test``:
pytest would collect it as a test in every module that imports it.)

``download=False`` always: there is no internet in CI, and pydicom would otherwise try
to fetch a file it does not have, which hangs or fails far from the cause.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_charset_files, get_testdata_file

INSTALL_HINT = "install the test extras: pip install -e '.[test]'"


def pydicom_file(name: str) -> Path:
    """``name`` from pydicom's bundled test files or the ``pydicom-data`` package, or a skip."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name!r} is in neither pydicom nor the pydicom-data "
                    f"package ({INSTALL_HINT})")
    return Path(str(path))


def charset_file(name: str) -> Path:
    """``name`` from pydicom's character set test files (shipped with pydicom), or a skip."""
    paths = get_charset_files(name)
    if not paths:
        pytest.skip(f"pydicom character set test file {name!r} not found in the pydicom "
                    f"package ({INSTALL_HINT})")
    return Path(paths[0])
