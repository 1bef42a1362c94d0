"""config_svc: goals, their validation, activation limit and change feed (docs/rules.md §2)."""
