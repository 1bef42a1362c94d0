"""Export's calls to other systems: SMTP, the tracker's conversions, config's goal names."""
