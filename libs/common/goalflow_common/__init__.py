"""goalflow_common: what every goalflow service shares.

Generated protobuf code lives in ``goalflow_common.pb`` (``make protos``); the rest is the
runtime every server is built from: settings, logging, the database connection, the
embedded database launcher, authentication and the gRPC server bootstrap.
"""
