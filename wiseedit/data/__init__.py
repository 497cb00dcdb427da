"""Data files shipped inside the package, read with importlib.resources (nothing outside the package is read)."""
