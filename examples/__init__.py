"""Example policies for real applications' schemas (see examples/README.md)."""
