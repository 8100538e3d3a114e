"""Run the command-line client: python -m transcribe_client."""

from __future__ import annotations

from transcribe_client.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
