"""Figures and tables built from the benchmark's finished runs."""
