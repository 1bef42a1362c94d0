"""The export domain: jobs and leases, the worker lifecycle, CSV rows, zip, links, mail."""
