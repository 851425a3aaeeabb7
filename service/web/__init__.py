"""The web view: one HTML page and its static files, served by the API's own app (no CDN)."""
