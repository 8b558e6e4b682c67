"""Layer 5: benchmark plans, cell kinds, the runner and its executors (local, Ray)."""
