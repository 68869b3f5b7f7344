"""Pass-through benchmark: pgbench straight to Postgres, through mlproxy, and
through PgBouncer (session mode), at several client counts.

Ordinary SQL must cross the proxy at nearly the speed of a bare relay (DESIGN.md,
principle 1); PgBouncer is the yardstick, direct-over-unix-socket the floor.
Run with `python -m benchmarks.passthrough [--quick | --seconds N]`.
"""
