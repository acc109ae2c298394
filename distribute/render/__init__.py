"""Rendering: a release into email drafts, messages and social posts. Pure: no I/O but templates."""
