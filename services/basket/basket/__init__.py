"""Basket service: catalogue of variants, stock and its reservations, baskets and their lines."""
