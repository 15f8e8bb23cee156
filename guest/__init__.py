"""The guest side: runs inside the VM (standard library only) and in the host's tests.

Layers, each importing only those below it (tests/test_layout.py):
runner -> fixtures, workers -> adapters (the emulated USB devices and chip
models) -> provider, gpiocdev, waits (what all of them use).
"""
