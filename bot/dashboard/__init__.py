"""The doctors' dashboard: staff sign-in, the case queue, case pages and live updates."""
