"""Transcription jobs: records, stores, the runners and the API the faces call."""
