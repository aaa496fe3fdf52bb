"""funnelpulse: real-time marketing KPIs from Kafka event streams."""

__version__ = "0.1.0"
