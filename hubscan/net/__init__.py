"""HTTP for everything that talks to a hub: one client, one retry policy, one rate limiter.

- ``http``      the retrying ``httpx`` transport installed into ``huggingface_hub``, the
                ``RetryPolicy`` (``HUBSCAN_HTTP_*``), error mapping, offline mode, byte counts
- ``ratelimit`` the Hub's ``RateLimit`` headers and a client-side fixed-window limiter

Below both ``readers`` (the streaming safetensors reader) and ``sources`` (listings,
downloads), so the two share a policy without importing each other.
"""
