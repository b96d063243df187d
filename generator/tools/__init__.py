"""Wrappers around external binaries: one module per tool."""
