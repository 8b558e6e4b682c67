"""Layer 4: evaluate a model under attack cascades (per-sample worst case), validity flags."""
