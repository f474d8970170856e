"""Orders service: orders, their lines and addresses, statuses and references; orchestrates the checkout saga."""
