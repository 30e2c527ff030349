"""A real gateway in front of the embedded demo PACS, for tests that shape the PACS.

The demo PACS (``dicomweb_gw.demo``) needs no Debian packages: tests using it
run without the ``pacs`` marker. ``pacs_class`` lets a test observe the PACS
(a subclass counting what it was asked), ``fault`` makes it misbehave.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dicomweb_gw.demo import DemoPacs, Fault
from dicomweb_gw.settings import PacsNode
from gateway_fixtures import RunningGateway, make_settings, running_gateway
from pacs_fixtures import GATEWAY_AE_TITLE, free_port

NODE = "demo"


@dataclass(frozen=True)
class DemoSetup:
    gateway: RunningGateway
    pacs: DemoPacs


@contextmanager
def demo_gateway(
    tmp_path: Path, files: Iterable[Path], *, pacs_class: type[DemoPacs] = DemoPacs,
    fault: Fault | None = None, retrieve: str = "c-get",
    node: Mapping[str, object] | None = None, **settings: object,
) -> Iterator[DemoSetup]:
    """The gateway (node ``demo``, extra ``PacsNode`` fields in ``node``, extra
    ``Settings`` fields as keywords) over a demo PACS holding ``files``."""
    store_port = free_port()
    pacs = pacs_class(tmp_path / "pacs", ae_title="DEMOPACS", fault=fault,
                      move_destinations={GATEWAY_AE_TITLE: ("127.0.0.1", store_port)})
    pacs.add_files(files)
    pacs.start()
    try:
        pacs_node = PacsNode(name=NODE, host="127.0.0.1", port=pacs.port, ae_title="DEMOPACS",
                             retrieve=retrieve, timeout=15.0,  # type: ignore[arg-type]
                             **dict(node or {}))  # type: ignore[arg-type]
        settings_ = make_settings((pacs_node,), store_port=store_port, tmp=tmp_path,
                                  **settings)  # type: ignore[arg-type]
        with running_gateway(settings_) as gateway:
            yield DemoSetup(gateway, pacs)
    finally:
        pacs.stop()
