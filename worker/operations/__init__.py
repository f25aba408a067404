"""Operations: configuration (the one place settings are read), logs, metrics, health."""
