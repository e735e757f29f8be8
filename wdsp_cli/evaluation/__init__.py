"""Scoring an edited model: efficacy, generalisation, locality and their Score."""
