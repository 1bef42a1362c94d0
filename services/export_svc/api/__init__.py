"""The export service's gRPC servicer, its protobuf mapping and the download HTTP server."""
