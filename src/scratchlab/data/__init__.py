"""Data: synthetic tasks, readers for the official file formats, downloads, and the dataset registry."""
