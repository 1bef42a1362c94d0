"""The config service's calls to other services: the tracker's conversion counts."""
