"""A plain pynetdicom C-GET of one study, for the retrieve benchmark's floor.

Stock pynetdicom (none of the gateway's patches: this runs as its own process),
the gateway's socket settings (TCP_NODELAY, a 4 MiB maximum PDU), every
instance kept in memory as received and nothing else done with it: no cache
write, no HTTP. What a Python DIMSE receive costs on its own, so that the
gateway's cold figures can be read against it as well as against getscu.

    python bench/plain_pynetdicom.py HOST PORT AE_TITLE STUDY_UID

prints one JSON line: ``{"first_s": ..., "total_s": ..., "bytes": ...}``, timed
from before the association request to after its release (the interpreter's
start and imports are not in it, as getscu's start is in its own figure).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
)

UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
MAX_PDU = 4 * 1024 * 1024  # as the gateway's (pacs/associations.py)


def retrieve(host: str, port: int, ae_title: str, study_uid: str) -> dict[str, float]:
    ae = AE(ae_title="BENCH_PLAIN")
    ae.maximum_pdu_size = MAX_PDU
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    storage = (CTImageStorage, MRImageStorage)
    for sop_class in storage:
        ae.add_requested_context(sop_class, UNCOMPRESSED)
    kept: list[bytes] = []
    first: list[float] = []

    def on_store(event: Any) -> int:
        kept.append(event.request.DataSet.getvalue())
        if not first:
            first.append(time.perf_counter())
        return 0x0000

    started = time.perf_counter()
    assoc = ae.associate(host, port, ae_title=ae_title,
                         ext_neg=[build_role(sop_class, scp_role=True) for sop_class in storage],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        raise SystemExit(f"association with {ae_title} at {host}:{port} failed")
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    final = None
    for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet):
        if "Status" in status:
            final = int(status.Status)
    assoc.release()
    total = time.perf_counter() - started
    if final != 0x0000 or not kept:
        raise SystemExit(f"C-GET ended with {final!r} after {len(kept)} instances")
    return {"first_s": first[0] - started, "total_s": total,
            "bytes": sum(len(data) for data in kept), "instances": len(kept)}


if __name__ == "__main__":
    host, port, ae_title, study_uid = sys.argv[1:5]
    print(json.dumps(retrieve(host, int(port), ae_title, study_uid)))
