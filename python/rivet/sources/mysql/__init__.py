"""MySQL and MariaDB: the only place that knows their SQL, catalog and estimates."""
