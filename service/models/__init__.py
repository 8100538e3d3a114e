"""Bundled Whisper models and conversion of CTranslate2 Whisper models to openai-whisper checkpoints."""
