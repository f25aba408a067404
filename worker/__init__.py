"""The streaming worker: Faust agents, GPU-resident state, Redis persistence, alerts, CLI."""
