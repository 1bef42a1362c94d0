"""tracker_svc: event ingestion, attribution, conversions and reports (docs/rules.md §3-5).

Not built yet: see issue 3. The contract is in protos/goals/v1/tracker.proto.
"""
