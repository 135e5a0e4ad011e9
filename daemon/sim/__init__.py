"""Simulated peers for the demo and the tests: stand-ins for the outside services."""
