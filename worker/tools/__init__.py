"""The command line's own parts: subcommands, the embedded dev stack, feeds, the live view, kafka-python clients."""
