"""The core every face calls: one entry for a finished recording, admission, and the audio's life on disk."""
