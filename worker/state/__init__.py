"""Durable patient state: the Redis record format and the Redis store."""
