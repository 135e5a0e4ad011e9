"""outboxd: reliable delivery of records to outside services."""

__version__ = "0.1.0"
