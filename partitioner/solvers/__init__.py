"""Pipeline and wafer solvers: pure functions from numbers to assignments."""
