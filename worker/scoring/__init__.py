"""Scoring: the risk engine, the device-resident state slab, alert policy and reasons."""
