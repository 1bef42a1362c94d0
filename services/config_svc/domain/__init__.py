"""The config service's domain: the typed model, the pure rules and the goal workflows
(lifecycles with optimistic retries, active-slot claims), over the store's Protocol."""
