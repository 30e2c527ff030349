"""Shared pytest configuration: the real-PACS fixtures and the test corpus are plugins."""

pytest_plugins = ["pacs_fixtures", "corpus", "gateway_fixtures", "cluster_fixtures", "s3_fixtures"]
