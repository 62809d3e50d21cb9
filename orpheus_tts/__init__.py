"""Orpheus TTS: the Python SDK, the v1 wire contract and the command line."""

__version__ = "0.1.0"
