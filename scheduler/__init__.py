"""share-scheduler: shares each iMessage chat's contact card through Linq once a day."""

__version__ = "0.1.0"
