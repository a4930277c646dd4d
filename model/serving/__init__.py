"""Serving many students from one process: the model store, the trace cache with admission, the link policy."""
