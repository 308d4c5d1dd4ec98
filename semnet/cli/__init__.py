"""Faces: the `semnet` command line."""
