"""The embedded model in its own process: a native crash there is a restart, not an outage.

`protocol` is the typed conversation between the two processes, `model` runs in the child
(PyTorch, transformers), `process` supervises the child from CareBot's side.
"""
