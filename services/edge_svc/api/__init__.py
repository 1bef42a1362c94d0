"""The edge's HTTP side: the ASGI application (CORS, health, routing by path), the connectrpc
applications built from our descriptors, the codecs for Google-protobuf classes and the
interceptors that check the caller and log each call."""
