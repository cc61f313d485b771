"""A chat server's schema (times in Unix milliseconds, a table without a primary key)."""
