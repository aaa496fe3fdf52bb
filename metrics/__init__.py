"""KPI formulas over raw counts (pure) and the publishers that put them in front of users."""
