"""Getting activity into the ledger: webhooks, backfill, import."""
