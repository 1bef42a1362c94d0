"""The edge: browser protocols (Connect JSON and binary, gRPC-Web, gRPC) for the browser
RPCs of the three services, forwarded to their native gRPC ports."""
