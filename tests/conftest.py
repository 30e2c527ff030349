"""Shared pytest configuration: the real-PACS fixtures and the test corpus are plugins.

``tests/`` is on ``sys.path`` through ``pythonpath`` in pyproject.toml's
``[tool.pytest.ini_options]``, so these plugins load by module name here and in
bench/conftest.py alike, and test modules import the plain helpers the same way
(``from testdata import pydicom_file``: pydicom's test files, skipping when missing).
"""

pytest_plugins = ["pacs_fixtures", "corpus", "gateway_fixtures", "cluster_fixtures", "s3_fixtures"]
