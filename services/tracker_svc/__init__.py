"""tracker_svc: event ingestion, attribution, conversions and reports (docs/rules.md §3-5).

The contract is in protos/goals/v1/tracker.proto. Layers: ``api`` (gRPC handlers and proto
conversion), ``domain`` (the rules, no I/O of its own), ``store`` (MongoDB, every query and
nx-27017 workaround).
"""
