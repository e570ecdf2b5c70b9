"""The share pass: select due chats, claim, call Linq, record."""
