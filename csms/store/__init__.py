"""Persistence: SQLModel tables, the async engine, and the group-commit writer."""
