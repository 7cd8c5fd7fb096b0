"""One package per model format: its FORMAT, how to open it as a source, its Runner, and the
Exports that produce it. ``converter.registry`` discovers them; nothing here imports a framework
at module level."""
