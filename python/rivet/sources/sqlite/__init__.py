"""SQLite: the only place that knows its SQL and file handling."""
