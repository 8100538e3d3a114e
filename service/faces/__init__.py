"""The faces callers reach the core through; each converts its wire format to domain values and back."""
