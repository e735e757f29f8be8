"""The workspace on disk: its format and every write (store), the crash-safe writer, the model at an iteration."""
