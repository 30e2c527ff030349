"""Benchmarks reuse the test suite's real-PACS fixtures and corpus."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

pytest_plugins = ["pacs_fixtures", "corpus", "gateway_fixtures"]
