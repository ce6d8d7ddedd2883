"""Ledelsesinfo: weekly figures for team leaders and monthly figures for the committee (domain.md §6)."""
