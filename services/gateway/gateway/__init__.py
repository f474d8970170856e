"""Gateway: the only public HTTP surface; routes /api/v1 to the owning service."""
