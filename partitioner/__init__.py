"""Solvers, plan schema and validator, NumPy executor, simulators and the CLI."""

__version__ = "0.1.0"
