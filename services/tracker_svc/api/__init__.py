"""The tracker's gRPC side: the servicer, request parsing and caller checks, and the
mapping between protobuf messages and the model."""
