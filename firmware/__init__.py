"""The firmware's C sources, shipped inside the package so that an installed neurocc (a wheel, not a
checkout) can build them: runtime/serial/firmware.py finds them with importlib.resources. Nothing in
here is Python; the C is standalone and builds with firmware/Makefile."""
