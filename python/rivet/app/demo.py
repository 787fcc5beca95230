"""The embedded demo: a small SQLite database, a config that exports it, and one run."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

DEMO_CONFIG = """\
# rivet demo: a SQLite database exported to Parquet and CSV.
# Run it again with:  rivet run -c {config}
source:
  type: sqlite
  path: demo.db

exports:
  - name: customers
    table: customers
    destination: exports/customers

  - name: orders
    query: >
      SELECT id, customer_id, amount, status, ordered_at, note
      FROM orders WHERE status <> 'cancelled'
    format: parquet
    compression: zstd
    destination: exports/orders

  - name: orders_csv
    table: orders
    format: csv
    destination: exports/orders_csv
"""

COUNTRIES = ["DE", "FR", "US", "JP", "BR", "IN", "NL", "ES"]
STATUSES = ["paid", "shipped", "delivered", "cancelled", "refunded"]


def create_database(path: Path, customers: int = 1_000, orders: int = 20_000, seed: int = 7) -> None:
    """Write the demo tables (deterministic for a seed)."""
    rng = random.Random(seed)
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, "
            "country TEXT NOT NULL, signed_up DATE NOT NULL, vip BOOLEAN NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, "
            "amount DECIMAL(12,2) NOT NULL, status TEXT NOT NULL, ordered_at DATETIME NOT NULL, note TEXT)"
        )
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    f"Customer {i}",
                    None if i % 11 == 0 else f"customer{i}@example.com",
                    rng.choice(COUNTRIES),
                    f"20{rng.randint(15, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    int(rng.random() < 0.1),
                )
                for i in range(1, customers + 1)
            ],
        )
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    rng.randint(1, customers),
                    # Stored as text so the decimal stays exact.
                    f"{rng.randint(100, 99_999) / 100:.2f}",
                    rng.choice(STATUSES),
                    f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
                    f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
                    None if i % 7 else rng.choice(["gift wrap", "leave at door", "fragile ✓"]),
                )
                for i in range(1, orders + 1)
            ],
        )
    conn.close()


def prepare_demo(directory: Path) -> Path:
    """Create the database and config under ``directory``; return the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    create_database(directory / "demo.db")
    config = directory / "rivet.yaml"
    config.write_text(DEMO_CONFIG.format(config=config), encoding="utf-8")
    return config
