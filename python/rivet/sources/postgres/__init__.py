"""PostgreSQL: the only place that knows its SQL, catalog, estimates and snapshots."""
