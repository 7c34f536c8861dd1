"""Scripts the tests run as separate OS processes, and what they share."""
