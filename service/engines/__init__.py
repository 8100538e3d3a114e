"""Local Whisper engines: the engine contract, the model pool, the bundled models and the language table."""
