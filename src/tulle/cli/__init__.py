"""The ``tulle`` command: one module per sub-command, loaded on first use."""
