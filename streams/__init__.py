"""The Faust application: event models, validation, agents and tables."""
