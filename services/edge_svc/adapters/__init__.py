"""The edge's gRPC side: channels to the three services and the calls forwarded on them."""
