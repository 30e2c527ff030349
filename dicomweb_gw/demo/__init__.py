"""An embedded demo PACS: a pynetdicom Query/Retrieve SCP over a folder of DICOM files.

Used by ``dicomweb-gw demo`` (a gateway with sample data for a newcomer) and by
the test suite, which injects PACS failures through :class:`Fault`.
"""

from __future__ import annotations

from dicomweb_gw.demo.sample_data import generate_sample_data
from dicomweb_gw.demo.scp import DemoPacs, Fault

__all__ = ["DemoPacs", "Fault", "generate_sample_data"]
