"""Shared helpers of the character-training steps: I/O, chat formatting, generation engines, validation."""
