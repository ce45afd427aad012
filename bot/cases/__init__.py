"""Cases handed to doctors: lifecycle, summaries, alerts and the live hand-off."""
