"""The gRPC transport: servicer, error mapping, health, reflection and server lifecycle."""
