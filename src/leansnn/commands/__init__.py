"""Sub-commands of the ``leansnn`` CLI (one module each; see :mod:`leansnn.cli`)."""
