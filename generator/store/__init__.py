"""Persistence: PostgreSQL connections, migrations, and the SQL of each table."""
