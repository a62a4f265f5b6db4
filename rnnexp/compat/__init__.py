"""Adapters: every private attribute or patch of a library rnnexp relies on, one module per library.

A library upgrade that renames an internal breaks here and nowhere else, and ``check()`` of each
module (run by tests/test_compat.py) fails naming the library's version and the internal, so the
fix is found in one place. Code elsewhere calls these functions, never the internals.

Imports nothing of rnnexp: anything may import an adapter.
"""
