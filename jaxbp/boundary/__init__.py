"""The boundary: what a user hands in is checked here (arrays: ranks, shapes, values; ``.npz`` files read without pickle)."""
