"""``convertkit run``: many models from one pipeline file, as a CI step (spec, execution, cache,
summary and the reports CI systems show). Stdlib + click at import time."""
