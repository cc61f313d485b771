"""The tamper-evident audit log (SPEC section 6): tables, writer, verifier."""
