"""Checked-in benchmark audio, its reference texts, and the script that made them."""
