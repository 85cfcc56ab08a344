"""HTTP routes, one module per resource; each exposes a function that builds its router."""
