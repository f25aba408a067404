"""`vitalwatch bench`: the worker's throughput and latency, measured side by side with what
bounds it (a raw Kafka consumer, a Faust agent that does nothing) and with what a first attempt
would do (a naive per-event worker), on one pre-produced topic of simulator events.

Every Faust-based contender runs as its own subprocess, as the real worker runs in production,
so none of them shares an event loop, an interpreter lock or imported state with the harness.
"""
