"""Terminal presentation shared by every stage (rich)."""
