"""What a person watching sees: progress bars, cards and plain progress lines."""
