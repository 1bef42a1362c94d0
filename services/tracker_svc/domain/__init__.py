"""The tracker's rules and workflows over the typed model (``model``), with no gRPC and no
database: the stores are reached through ``tracker_svc.store.protocols``."""
