"""Benchmark of threadkeeper's own cost per message, beside the expiring-threads article's patterns.

Run ``python -m bench`` from a checkout (see ``bench/README.md``).
"""
