"""The boundary: what a user hands in is checked here (arrays: ranks, shapes, values; ``.npz`` files read without
pickle), and every file jaxbp writes goes out through ``files`` (exclusive temporaries, atomic, no link followed)."""
