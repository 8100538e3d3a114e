"""The gRPC face: TranscribeService, its one error table, health, reflection and the call interceptors."""
