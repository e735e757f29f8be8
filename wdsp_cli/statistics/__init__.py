"""Second-moment statistics C = E[k k^T] of the edited layers' keys."""
