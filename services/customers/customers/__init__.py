"""Customers service: accounts, sign-in (access and refresh tokens) and address books."""
