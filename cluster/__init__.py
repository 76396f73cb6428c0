"""Running as a cluster: which node owns which PBX (PostgreSQL advisory locks), and the
Redis streams that carry each PBX's events and actions between the nodes."""
