"""Several replicas behind one Service: coordination through Redis (optional)."""
