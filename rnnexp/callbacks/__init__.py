"""Lightning callbacks: one concept per module."""
