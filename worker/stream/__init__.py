"""The stream: Kafka in, one micro-batch at a time through decode, scoring, publish and persist, Kafka out."""
