"""The gRPC face of the config service: the servicer and the request/reply mapping."""
