"""The workspace on disk: its format, every path and every write (store), the model at an iteration (checkout)."""
