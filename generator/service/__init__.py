"""The core both entry points call: one function per user-visible operation."""
