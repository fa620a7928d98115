"""Loading checkpoints, the chat format and special tokens."""
