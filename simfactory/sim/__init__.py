"""SimPy model of the serving fleet: traffic -> router -> replica engines. Knows nothing of reports."""
