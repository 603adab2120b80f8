"""simfactory: discrete-event simulator and capacity planner for AI factories."""

__version__ = "0.1.0"
