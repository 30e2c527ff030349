"""Talking to the PACS: the ``PacsClient`` seam and its DIMSE implementation."""
