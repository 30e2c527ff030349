"""The seam between DICOMweb semantics and the PACS.

``dicomweb/`` talks only to this Protocol, so a test can put a fake here and a
future backend (another DICOMweb server, a VNA API) can slot in beside DIMSE.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Protocol

from pydicom.dataset import Dataset

from dicomweb_gw.model import QueryLevel, RetrievedInstance, RetrieveKeys

__all__ = ["PacsClient"]


class PacsClient(Protocol):
    """One PACS. Iterators are lazy: closing one early cancels the operation."""

    @property
    def name(self) -> str: ...

    def find(self, level: QueryLevel, identifier: Dataset) -> AsyncGenerator[Dataset, None]:
        """C-FIND at ``level`` (Study Root); yields each matching identifier."""
        ...

    def retrieve(
        self, keys: RetrieveKeys, *, sop_class_uids: Sequence[str] = ()
    ) -> AsyncGenerator[RetrievedInstance, None]:
        """C-GET or C-MOVE the instances under ``keys``, yielding each as it arrives.

        ``sop_class_uids`` are the storage SOP classes expected, when known: C-GET
        must propose them as presentation contexts up front.
        """
        ...

    async def echo(self) -> None:
        """C-ECHO; raises a ``PacsError`` when the PACS does not answer."""
        ...

    async def aclose(self) -> None:
        """Release pooled associations."""
        ...
