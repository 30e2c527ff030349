"""Where the C-STORE sub-operations of one retrieve land.

The same sink serves C-GET (stores arrive on the retrieve's own association)
and C-MOVE (they arrive on the gateway's storage SCP), so both paths hand
instances to the waiting request in exactly the same way.
"""

from __future__ import annotations

import time
from typing import Any

from dicomweb_gw.model import RetrievedInstance
from dicomweb_gw.pacs.bridge import Cancelled, Channel

__all__ = ["InstanceSink", "instance_from_store_event"]

STORE_SUCCESS = 0x0000
#: Refuse further sub-operations: the request they were for is gone.
STORE_REFUSED = 0xA700


class InstanceSink:
    def __init__(self, channel: Channel[RetrievedInstance]) -> None:
        self.channel = channel
        self.received = 0
        self.last_activity = time.monotonic()

    def on_store(self, event: Any) -> int:
        """``evt.EVT_C_STORE`` handler for a C-GET association."""
        return self.deliver(instance_from_store_event(event))

    def deliver(self, instance: RetrievedInstance) -> int:
        """Hand ``instance`` to the waiting request; the C-STORE status to answer."""
        self.last_activity = time.monotonic()
        try:
            self.channel.put(instance)
        except Cancelled:
            return STORE_REFUSED
        self.received += 1
        self.last_activity = time.monotonic()
        return STORE_SUCCESS


def instance_from_store_event(event: Any) -> RetrievedInstance:
    """Keep the encoded bytes as received: nothing is decoded on the hot path."""
    request = event.request
    return RetrievedInstance(
        sop_class_uid=str(request.AffectedSOPClassUID),
        sop_instance_uid=str(request.AffectedSOPInstanceUID),
        transfer_syntax_uid=str(event.context.transfer_syntax),
        dataset=request.DataSet.getvalue(),
    )
