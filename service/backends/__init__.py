"""Transcription backends: one module per engine behind the TranscriptionBackend protocol."""
