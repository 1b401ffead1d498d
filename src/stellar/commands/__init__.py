"""Command groups of the ``stellar`` CLI; each module exposes ``register(subparsers)``."""
