"""dicomweb-gw: a DICOMweb gateway in front of legacy DIMSE PACS."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
