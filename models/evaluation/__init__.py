"""Evaluation: cohort scoring, metrics, real-data reports and plots."""
