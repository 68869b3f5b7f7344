"""The cost of ML on a realistic mix: a pgbench script of 90% primary-key selects and
10% one-row model calls through mlproxy, vs PgBouncer running it with a constant."""
