"""export_svc: goal conversions as zipped CSV files, signed download links, e-mail
(docs/rules.md §6)."""
