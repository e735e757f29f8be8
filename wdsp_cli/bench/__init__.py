"""The iterative benchmark protocol (T batches of B) with its tables and plots."""
