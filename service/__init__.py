"""The transcribe gRPC server: settings, domain, backends and transport."""
