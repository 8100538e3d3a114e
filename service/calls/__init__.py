"""Cross-cutting work every face shares: request ids, the token check, the call log and metrics."""
