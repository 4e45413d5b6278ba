"""Cold start: process start -> ready, and resident memory, for our server and its peers."""
