"""The roles' loops. They call named store operations and channel senders;
they know nothing of SQL or of protocols."""
