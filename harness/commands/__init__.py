"""One module per command: its request, its outcome and its result writer."""
