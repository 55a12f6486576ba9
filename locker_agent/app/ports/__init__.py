"""The interfaces the application layer needs from the outside world; adapters implement them."""
