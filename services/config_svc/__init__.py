"""config_svc: goals, their validation, activation limit and change feed (SPEC section 2)."""
