"""The host side: builds kernels, boots them, runs scenarios, and judges what happened."""
