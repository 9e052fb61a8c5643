"""Optimisers built on the core (one module per algorithm family, see DESIGN.md)."""
