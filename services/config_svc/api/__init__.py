"""The gRPC face of the config service: the servicer, the request/reply mapping and the
tracker-backed conversion counts."""
