"""Audio intake: upload files on disk, probing and decoding with PyAV."""
