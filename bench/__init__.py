"""funnelpulse benchmark harness (issue 5): ``python -m bench.run --help``.

Kept import-free: the Quix Streams child runs from its own virtualenv and imports
``bench.child`` only.
"""
