"""The worker types: the consumers that use a provider while the runner removes it."""
