"""Kernel-module tests (see lab/guest.py).

A package so that this directory's conftest.py is imported as
``kernel.conftest``: without it, pytest would register it under the bare name
``conftest`` and shadow tests/conftest.py, which other test modules import from.
"""
