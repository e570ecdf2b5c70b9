"""The ledger: the source of truth for chats, lines, share attempts and seen webhook events."""
