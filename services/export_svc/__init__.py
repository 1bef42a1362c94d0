"""export_svc: zipped CSV exports with signed links, mailed (SPEC 6).

Not built yet: see issue 4. The contract is in protos/goals/v1/export.proto.
"""
