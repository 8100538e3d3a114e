"""Benchmarks of the transcribe service (not tests): run with `make bench` or `python -m bench`."""
