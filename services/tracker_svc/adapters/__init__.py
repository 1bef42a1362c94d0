"""The tracker's calls to other services: config's goal feed, followed into the goal table."""
