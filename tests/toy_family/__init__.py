"""A toy fourth target family, in its own folder: how a new backend plugs in (docs/extending.md)."""
