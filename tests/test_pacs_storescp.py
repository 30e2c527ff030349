"""The C-MOVE storage SCP's own parts (moves themselves: test_integration_wado.py)."""

from __future__ import annotations

import copy

from pynetdicom import AllStoragePresentationContexts, build_context

from dicomweb_gw.pacs.storescp import QuicklyCopiedContexts


def test_quick_copies_equal_deep_copies_and_share_nothing_mutable() -> None:
    contexts = QuicklyCopiedContexts(
        build_context(cx.abstract_syntax, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        for cx in AllStoragePresentationContexts[:20])
    for index, context in enumerate(contexts, start=1):
        context.context_id = 2 * index - 1
        context.scp_role = True

    quick = copy.deepcopy(contexts)
    deep = copy.deepcopy(list(contexts))

    assert [(c.abstract_syntax, c.transfer_syntax, c.context_id, c.scp_role) for c in quick] == [
        (c.abstract_syntax, c.transfer_syntax, c.context_id, c.scp_role) for c in deep]
    assert all(a is not b for a, b in zip(quick, contexts, strict=True))
    quick[0].add_transfer_syntax("1.2.840.10008.1.2.2")
    quick[1].context_id = 99
    assert "1.2.840.10008.1.2.2" not in contexts[0].transfer_syntax
    assert contexts[1].context_id == 3
