"""Change events: the outbox table is the truth; LISTEN/NOTIFY only wakes watchers."""
