"""Emulated hardware: FunctionFS gadgets speaking DLN-2 and CP2112, and the chip models."""
