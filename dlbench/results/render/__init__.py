"""Renderers of a report: its columns (columns.py), the terminal (terminal.py), the other formats (formats.py)."""
